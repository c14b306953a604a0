"""What can go wrong when asking GitHub, in terms the rest of the issuer acts on."""

from __future__ import annotations


class GitHubError(Exception):
    """GitHub did not give a usable answer."""


class GitHubNotFound(GitHubError):
    """404: unknown, of another repository, or private without access (GitHub does not say)."""


class GitHubUnavailable(GitHubError):
    """Try again later: an outage, a refused credential, or a rate limit."""

    def __init__(self, reason: str, *, retry_after: int) -> None:
        super().__init__(reason)
        self.retry_after = max(1, retry_after)


class GitHubRateLimited(GitHubUnavailable):
    """GitHub's primary or secondary rate limit; ``retry_after`` is when to ask again."""
