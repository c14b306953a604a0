"""The credentials the client may send: personal tokens, App installations, or none at all.

Each has a non-secret ``name`` (``token-1a2b3c4d``, ``app-123-inst-456``, ``anonymous``) that
logs, metrics and the shared budget use; the secret itself appears in no repr or message.

Installation tokens are minted on first use and kept in this process's memory only (never in
the store), until shortly before GitHub's ``expires_at``. Replicas mint their own; the
installation's rate limit is shared by all its tokens, so the budget is kept under the
installation's name.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

from issuer.github.app_auth import GitHubApp

DEFAULT_LIMIT = 5000
ANONYMOUS_LIMIT = 60
# Mint a new installation token this long before the old one expires.
REFRESH_MARGIN = 300.0
# GitHub may refuse a brand-new installation token for a few seconds.
YOUNG_TOKEN_SECONDS = 10.0
YOUNG_RETRY_SECONDS = 2.0
# The previous token serves while the new one is young, unless it expires this soon.
PREVIOUS_MARGIN = 30.0


@dataclass(frozen=True)
class MintedToken:
    token: str
    expires_at: float  # epoch seconds

    def __repr__(self) -> str:
        return f"MintedToken(expires_at={self.expires_at})"


# (app JWT, installation id) -> a new installation token
Minter = Callable[[GitHubApp, int], Awaitable[MintedToken]]


class Credential(Protocol):
    name: str
    default_limit: int

    async def authorization(self, mint: Minter) -> str | None:
        """The ``Authorization`` header value (None: send none)."""

    def refused(self) -> float | None:
        """GitHub answered 401. None: the credential is bad, rest it. 0: a fresh value may
        help, retry now. Above 0: retry this credential after that many seconds."""

    def accepted(self) -> None:
        """GitHub answered something other than 401 to this credential."""


class AnonymousCredential:
    name = "anonymous"
    default_limit = ANONYMOUS_LIMIT

    async def authorization(self, mint: Minter) -> str | None:
        return None

    def refused(self) -> float | None:
        return None

    def accepted(self) -> None:
        pass

    def __repr__(self) -> str:
        return "AnonymousCredential()"


class TokenCredential:
    """A personal access token (classic or fine-grained), or any fixed token."""

    default_limit = DEFAULT_LIMIT

    def __init__(self, token: str) -> None:
        if not token or any(c.isspace() for c in token):
            raise ValueError("a GitHub token is one word")
        self._token = token
        self.name = "token-" + hashlib.sha256(token.encode()).hexdigest()[:8]

    async def authorization(self, mint: Minter) -> str | None:
        return f"Bearer {self._token}"

    def refused(self) -> float | None:
        return None

    def accepted(self) -> None:
        pass

    def __repr__(self) -> str:
        return f"TokenCredential({self.name})"


class InstallationCredential:
    """One installation of a GitHub App: installation tokens minted on demand."""

    default_limit = DEFAULT_LIMIT

    def __init__(
        self, app: GitHubApp, installation_id: int, *, clock: Callable[[], float] = time.time
    ) -> None:
        if installation_id <= 0:
            raise ValueError("an installation id is a positive number")
        self.app = app
        self.installation_id = installation_id
        self.name = f"app-{app.app_id}-inst-{installation_id}"
        self._clock = clock
        self._lock = asyncio.Lock()
        self._current: MintedToken | None = None
        # The token before a renewal, used while GitHub may still refuse the new one.
        self._previous: MintedToken | None = None
        self._minted_at = 0.0
        self._refreshed_after_refusal = False
        self.mints = 0

    def _usable(self) -> str | None:
        now = self._clock()
        current = self._current
        if current is None or now >= current.expires_at - REFRESH_MARGIN:
            return None
        previous = self._previous
        if (
            previous is not None
            and now - self._minted_at < YOUNG_TOKEN_SECONDS
            and now < previous.expires_at - PREVIOUS_MARGIN
        ):
            return previous.token
        return current.token

    async def authorization(self, mint: Minter) -> str | None:
        token = self._usable()
        if token is None:
            async with self._lock:  # one mint at a time, however many requests wait
                token = self._usable()
                if token is None:
                    minted = await mint(self.app, self.installation_id)
                    self.mints += 1
                    now = self._clock()
                    old = self._current
                    valid = old is not None and now < old.expires_at - PREVIOUS_MARGIN
                    self._previous = old if valid else None
                    self._current = minted
                    self._minted_at = now
                    token = self._usable() or minted.token
        return f"Bearer {token}"

    def accepted(self) -> None:
        """GitHub took the token: a later 401 may be refreshed once more."""
        self._refreshed_after_refusal = False

    def refused(self) -> float | None:
        if self._current is None:
            return None
        age = self._clock() - self._minted_at
        if self._previous is not None and 0 <= age < YOUNG_TOKEN_SECONDS:
            self._previous = None  # the old token was refused: go on with the new one
            return 0.0
        if 0 <= age < YOUNG_TOKEN_SECONDS:
            return min(YOUNG_RETRY_SECONDS, YOUNG_TOKEN_SECONDS - age)
        if self._refreshed_after_refusal:
            return None  # a refreshed token was refused too: the installation is unusable
        self._refreshed_after_refusal = True
        self._current = self._previous = None
        return 0.0

    def __repr__(self) -> str:
        return f"InstallationCredential({self.name})"
