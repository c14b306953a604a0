"""Live builders: their records, and how many each project has (the ``max_builders`` limit).

A project's live builders are one record ``{builder_id: expires_at}`` changed by
compare-and-set, so the limit holds across replicas. Expired entries are pruned at every
change, so a builder that died with its replica stops counting when its time is up.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from issuer.builder.buildtokens import BuildTokens
from issuer.store import Store

_RETRIES = 100
RECORD_GRACE = 60


@dataclass(frozen=True)
class BuilderRecord:
    id: str
    project: str
    expires_at: int
    credential_hash: str
    token_hash: str
    relationship_id: str
    issuer: str
    jti: str
    repository: str
    run_id: str


def credential_hash(credential: str) -> str:
    return hashlib.sha256(credential.encode()).hexdigest()


class BuilderRegistry:
    def __init__(
        self, store: Store, tokens: BuildTokens, clock: Callable[[], float] = time.time
    ) -> None:
        self._store = store
        self._tokens = tokens
        self._clock = clock

    @staticmethod
    def _live_key(project: str) -> str:
        return f"builder:live:{project}"

    @staticmethod
    def _record_key(builder_id: str) -> str:
        return f"builder:b:{builder_id}"

    async def reserve(self, project: str, builder_id: str, expires_at: int, limit: int) -> int:
        """Count ``builder_id`` as live for ``project`` if fewer than ``limit`` are; 0 if done,
        else the seconds until the first live one expires (for ``Retry-After``)."""
        for _ in range(_RETRIES):
            raw = await self._store.get(self._live_key(project))
            live = self._live(raw)
            if len(live) >= limit:
                return max(1, math.ceil(min(live.values()) - self._clock()))
            live[builder_id] = expires_at
            if await self._write(project, raw, live):
                return 0
            await asyncio.sleep(0)
        raise RuntimeError("the live builders kept changing under this write")

    async def unreserve(self, project: str, builder_id: str) -> None:
        for _ in range(_RETRIES):
            raw = await self._store.get(self._live_key(project))
            live = self._live(raw)
            if live.pop(builder_id, None) is None and raw is None:
                return
            if await self._write(project, raw, live):
                return
            await asyncio.sleep(0)
        raise RuntimeError("the live builders kept changing under this write")

    async def live(self, project: str) -> dict[str, int]:
        """The project's live builders and when each expires."""
        return self._live(await self._store.get(self._live_key(project)))

    def _live(self, raw: bytes | None) -> dict[str, int]:
        now = self._clock()
        current: dict[str, int] = json.loads(raw) if raw else {}
        return {bid: exp for bid, exp in current.items() if exp > now}

    async def _write(self, project: str, raw: bytes | None, live: dict[str, int]) -> bool:
        ttl = max(live.values(), default=self._clock() + 1) - self._clock() + RECORD_GRACE
        encoded = json.dumps(live, separators=(",", ":"), sort_keys=True).encode()
        return await self._store.compare_and_set(self._live_key(project), raw, encoded, ttl=ttl)

    async def save(self, record: BuilderRecord) -> None:
        ttl = max(1, record.expires_at - self._clock()) + RECORD_GRACE
        await self._store.set(
            self._record_key(record.id), json.dumps(asdict(record)).encode(), ttl=ttl
        )

    async def get(self, builder_id: str) -> BuilderRecord | None:
        raw = await self._store.get(self._record_key(builder_id))
        return None if raw is None else BuilderRecord(**json.loads(raw))

    async def authenticate(self, builder_id: str, credential: str) -> BuilderRecord | None:
        """The builder's record if ``credential`` is its credential (constant-time compare)."""
        record = await self.get(builder_id)
        if record is None:
            return None
        presented = credential_hash(credential)
        return record if hmac.compare_digest(presented, record.credential_hash) else None

    async def release(self, builder_id: str) -> BuilderRecord | None:
        """Forget the builder: its build token stops working and it no longer counts toward
        the limit. Idempotent; only the first caller gets the record back."""
        record = await self.get(builder_id)
        if record is None or not await self._store.delete(self._record_key(builder_id)):
            return None
        await self._tokens.revoke(record.token_hash)
        await self.unreserve(record.project, builder_id)
        return record
