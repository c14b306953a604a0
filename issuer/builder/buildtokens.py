"""Build tokens: opaque, random, stored only as their SHA-256, bound to one builder and one
project, and gone from the store when the builder expires (the record's TTL)."""

from __future__ import annotations

import hashlib
import json
import secrets
import time
from dataclasses import asdict, dataclass

from issuer.store import Store

PREFIX = "bt_"


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def _key(digest: str) -> str:
    return f"builder:bt:{digest}"


@dataclass(frozen=True)
class BuildTokenInfo:
    """What a build token stands for: the introspection answer's extension fields."""

    builder_id: str
    project: str
    issued_at: int
    expires_at: int
    sub: str
    repository: str
    run_id: str


class BuildTokens:
    def __init__(self, store: Store) -> None:
        self._store = store

    async def mint(self, info: BuildTokenInfo) -> tuple[str, str]:
        """A new token for ``info``, stored hashed; returns the token and its hash."""
        token = PREFIX + secrets.token_urlsafe(32)
        digest = token_hash(token)
        ttl = max(1, info.expires_at - int(time.time()))
        await self._store.set(_key(digest), json.dumps(asdict(info)).encode(), ttl=ttl)
        return token, digest

    async def lookup(self, token: str) -> BuildTokenInfo | None:
        """The token's binding, or None if unknown, revoked or expired."""
        if not token.startswith(PREFIX) or len(token) > 128:
            return None
        raw = await self._store.get(_key(token_hash(token)))
        if raw is None:
            return None
        info = BuildTokenInfo(**json.loads(raw))
        return info if info.expires_at > time.time() else None

    async def revoke(self, digest: str) -> None:
        await self._store.delete(_key(digest))
