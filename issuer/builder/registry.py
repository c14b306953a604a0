"""Live builders: their records, and how many each project has, in all and per run and per
head repository (the ``max_builders`` limit and the service's per-run limits).

A project's live builders are one record ``{builder_id: {"exp", "run", "head"}}`` changed by
compare-and-set, so every limit is checked and the builder counted in one write that holds
across replicas. Expired entries are pruned at every change, so a builder that died with its
replica stops counting when its time is up. The per-run and per-head-repository limits keep
one fork's author, who can make any number of claims on their own run or runs, from holding
every builder of a project.
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
class Slot:
    """A builder to count: when it expires, and whose it is."""

    builder_id: str
    expires_at: int
    run: str
    """``OWNER/REPO#RUN_ID``: every attempt of a run counts as the run."""
    head_repository: str


@dataclass(frozen=True)
class Limits:
    project: int
    run: int
    head_repository: int


@dataclass(frozen=True)
class RunLimits:
    """The service's limits on one run's and one head repository's live builders in a
    project (``BUILDER_MAX_BUILDERS_PER_RUN``, ``BUILDER_MAX_BUILDERS_PER_HEAD_REPOSITORY``),
    beside each relationship's ``max_builders``."""

    per_run: int = 4
    per_head_repository: int = 8


@dataclass(frozen=True)
class Full:
    """A limit was reached: which (``project``, ``run`` or ``head_repository``), its value, and
    the seconds until the first builder counting toward it expires (for ``Retry-After``)."""

    limit: str
    allowed: int
    retry_after: int


@dataclass(frozen=True)
class _Entry:
    exp: int
    run: str = ""
    head: str = ""

    @classmethod
    def of(cls, raw: object) -> _Entry:
        if isinstance(raw, dict):
            return cls(int(raw["exp"]), str(raw.get("run", "")), str(raw.get("head", "")))
        if isinstance(raw, int | float):
            return cls(int(raw))  # a record of an older version: {builder_id: expires_at}
        raise ValueError("not a live builder entry")


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

    async def reserve(self, project: str, slot: Slot, limits: Limits) -> Full | None:
        """Count the slot's builder as live for ``project`` unless that would pass a limit:
        the project's, its run's or its head repository's. None if counted, else the first
        limit reached."""
        for _ in range(_RETRIES):
            raw = await self._store.get(self._live_key(project))
            live = self._live(raw)
            full = self._full(live, slot, limits)
            if full is not None:
                return full
            live[slot.builder_id] = _Entry(slot.expires_at, slot.run, slot.head_repository)
            if await self._write(project, raw, live):
                return None
            await asyncio.sleep(0)
        raise RuntimeError("the live builders kept changing under this write")

    def _full(self, live: dict[str, _Entry], slot: Slot, limits: Limits) -> Full | None:
        groups = (
            ("project", limits.project, list(live.values())),
            ("run", limits.run, [e for e in live.values() if e.run and e.run == slot.run]),
            (
                "head_repository",
                limits.head_repository,
                [e for e in live.values() if e.head and e.head == slot.head_repository],
            ),
        )
        for name, allowed, counted in groups:
            if len(counted) >= allowed:
                first = min(entry.exp for entry in counted)
                return Full(name, allowed, max(1, math.ceil(first - self._clock())))
        return None

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
        live = self._live(await self._store.get(self._live_key(project)))
        return {builder_id: entry.exp for builder_id, entry in live.items()}

    def _live(self, raw: bytes | None) -> dict[str, _Entry]:
        now = self._clock()
        current: dict[str, object] = json.loads(raw) if raw else {}
        entries = {builder_id: _Entry.of(value) for builder_id, value in current.items()}
        return {builder_id: entry for builder_id, entry in entries.items() if entry.exp > now}

    async def _write(self, project: str, raw: bytes | None, live: dict[str, _Entry]) -> bool:
        last = max((entry.exp for entry in live.values()), default=self._clock() + 1)
        ttl = last - self._clock() + RECORD_GRACE
        record = {builder_id: asdict(entry) for builder_id, entry in live.items()}
        encoded = json.dumps(record, separators=(",", ":"), sort_keys=True).encode()
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
