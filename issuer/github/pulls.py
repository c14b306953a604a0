"""The pull request a run belongs to: one path, whatever the run lists.

A run's ``pull_requests`` is empty when the pull request comes from a fork (GITHUB.md), and
when it is not, GitHub lists pull requests matched by head SHA or branch, not necessarily the
one that ran: it is never taken as it is. The pull request is found, for every run, the same
way: ``GET /repos/{owner}/{repo}/pulls?state=open&head=OWNER:BRANCH``
lists the open pull requests whose head is that branch of that owner's repository. The issuer
takes one only if it is certain: exactly one open pull request into the run's repository from
the run's head repository and branch, whose head commit is the run's ``head_sha``. A later push
to the branch (a new head), a closed pull request, or several candidates give None, and the
token then carries no pull-request claims.
"""

from __future__ import annotations

import logging
from urllib.parse import urlencode

from issuer.github.client import GitHubClient
from issuer.github.errors import GitHubNotFound
from issuer.github.facts import MalformedAnswer, PullRequestFacts, PullRequestListing, RunFacts

log = logging.getLogger(__name__)


async def find_pull_request(github: GitHubClient, run: RunFacts) -> PullRequestFacts | None:
    """The run's open pull request, or None when GitHub does not make it certain. One
    (conditional) request, whether or not the run lists pull requests."""
    if not run.head_branch:
        return None
    head = f"{run.head_repository.owner_login}:{run.head_branch}"
    query = urlencode({"state": "open", "head": head, "per_page": "100"})
    try:
        items = await github.get_all(f"/repos/{run.repository.full_name}/pulls?{query}", None)
    except GitHubNotFound:
        return None
    found: list[PullRequestListing] = []
    for item in items:
        try:
            listing = PullRequestListing.parse(item)
        except MalformedAnswer:
            continue  # cannot be checked, so cannot be the one
        if (
            listing.state == "open"
            and listing.base_repo_id == run.repository.id
            and listing.head_repo_id == run.head_repository.id
            and listing.head_ref == run.head_branch
            and listing.head_sha == run.head_sha
        ):
            found.append(listing)
    if len(found) != 1:
        if len(found) > 1:
            log.info(
                "run %d: %d open pull requests share its head; naming none", run.id, len(found)
            )
        return None
    return found[0].facts
