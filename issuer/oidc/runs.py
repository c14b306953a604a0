"""What the issuer knows about one watched run, kept in the shared store for every replica.

A run is watched once, however many claims wait on it and whichever replicas they reach:
claims register their challenge codes here, the replica holding the run's lease looks at
GitHub and records every code it finds, and exchanges read their own code's sighting.
All keys of a run share one hash tag, so a Redis Cluster keeps them on one node.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from issuer.store import Bump, Delete, Get, HashGet, HashPut, Put, Store, Write, tagged

FAILURE_REJECTED = "rejected"
FAILURE_UNAVAILABLE = "unavailable"
RUN_HINT = "run"  # a hint that the run itself changed (a ``workflow_run`` delivery)
HOOKED_PREFIX = "gh:hooked:"


def hooked_key(repository: str) -> str:
    """Set while GitHub's deliveries arrive for the repository (by any replica's receiver)."""
    return HOOKED_PREFIX + repository.lower()


@dataclass(frozen=True)
class RunKey:
    """The run a claim names. Without an attempt, the latest attempt is watched."""

    repository: str
    run_id: int
    run_attempt: int | None

    @property
    def tag(self) -> str:
        return f"run:{self.repository.lower()}:{self.run_id}:{self.run_attempt or 0}"

    def describe(self) -> str:
        attempt = f" attempt {self.run_attempt}" if self.run_attempt else ""
        return f"{self.repository} run {self.run_id}{attempt}"


@dataclass(frozen=True)
class Failure:
    """Why the look begun at ``at`` told nothing: the run was refused (for now: a later look
    may accept it, say once a re-run's attempt exists), or GitHub is unavailable until
    ``until``. A later successful look clears it."""

    kind: str
    message: str
    at: float
    until: float

    def encode(self) -> bytes:
        return json.dumps(asdict(self)).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Failure:
        return cls(**json.loads(raw))


@dataclass(frozen=True)
class RunView:
    """What a waiting exchange needs of its run, read in one round trip: the run's version
    (read first, so the rest is at least that new), its failure if any, and the sightings of
    the codes asked for (a code not asked for is not a key of ``sightings``)."""

    version: int
    failure: Failure | None
    sightings: dict[str, dict[str, Any] | None]


@dataclass
class Memo:
    """What the watcher already read, so that no log is fetched twice. Written only by the
    lease holder, in the same hash and the same command as the sightings it led to."""

    logs_read: set[int] = field(default_factory=set)
    logs_too_large: set[int] = field(default_factory=set)  # read no further than the cap
    sighted_jobs: set[int] = field(default_factory=set)
    sighted_codes: set[str] = field(default_factory=set)

    def encode(self) -> bytes:
        return json.dumps(
            {
                "logs_read": sorted(self.logs_read),
                "logs_too_large": sorted(self.logs_too_large),
                "sighted_jobs": sorted(self.sighted_jobs),
                "sighted_codes": sorted(self.sighted_codes),
            }
        ).encode()

    @classmethod
    def decode(cls, raw: bytes | None) -> Memo:
        if raw is None:
            return cls()
        data: dict[str, Any] = json.loads(raw)
        return cls(
            logs_read=set(data["logs_read"]),
            logs_too_large=set(data.get("logs_too_large", ())),
            sighted_jobs=set(data["sighted_jobs"]),
            sighted_codes=set(data["sighted_codes"]),
        )


# The memo's field in the sightings hash: not a code (codes are 22+ URL-safe characters).
MEMO_FIELD = "~memo"


class RunState:
    """The shared record of one run. ``ttl`` bounds how long any of it is kept."""

    def __init__(
        self, store: Store, key: RunKey, *, ttl: float, clock: Callable[[], float] = time.time
    ) -> None:
        self.key = key
        self._store = store
        self._ttl = ttl
        self._clock = clock
        tag = key.tag
        self._claims = tagged(tag, "claims")
        self._sightings = tagged(tag, "sightings")
        self._lease = tagged(tag, "lease")
        self._wanted = tagged(tag, "wanted")
        self._status = tagged(tag, "status")
        self._failure = tagged(tag, "failure")
        self._version = tagged(tag, "version")
        self._pull = tagged(tag, "pull")
        self._hints = tagged(tag, "hints")
        self._hinted = tagged(tag, "hinted")
        self._claimants = tagged(tag, "claimants")

    @property
    def version_key(self) -> str:
        return self._version

    @property
    def lease_key(self) -> str:
        return self._lease

    @property
    def wanted_key(self) -> str:
        return self._wanted

    # -- claims waiting on the run ----------------------------------------------------------

    def claim_writes(self, code: str, expires_at: int, claimant: str | None = None) -> list[Write]:
        """The writes that register a claim's code with the run, for :meth:`Store.write_many`;
        with ``claimant``, the client address its looks are charged to."""
        writes: list[Write] = [
            HashPut(self._claims, {code: str(expires_at).encode()}, ttl=self._ttl)
        ]
        if claimant is not None:
            writes.append(
                HashPut(self._claimants, {claimant: str(expires_at).encode()}, ttl=self._ttl)
            )
        return writes

    async def claimants(self) -> list[str]:
        """The addresses of the run's unexpired claims."""
        now = self._clock()
        found = await self._store.hash_get_all(self._claimants)
        return sorted(address for address, until in found.items() if float(until) > now)

    async def is_claimed(self) -> bool:
        """Whether any claim was registered with the run (expired ones included)."""
        return bool(await self._store.hash_get_all(self._claims))

    # -- hints: GitHub's deliveries say where to look ------------------------------------------

    def hint_writes(self, what: str) -> list[Write]:
        """A delivery says ``what`` changed (a job id that completed, or :data:`RUN_HINT`):
        the run's watcher reads it at once (its ticker reads ``hinted``)."""
        return [
            HashPut(self._hints, {what: b"1"}, ttl=self._ttl),
            Put(self._hinted, repr(self._clock()).encode(), ttl=self._ttl),
        ]

    async def take_hints(self) -> set[str]:
        """The hints written since the last take, removed as they are taken."""
        found = await self._store.hash_get_all(self._hints)
        if found:
            await self._store.hash_delete(self._hints, *found)
        return set(found)

    async def hinted_at(self) -> float | None:
        raw = await self._store.get(self._hinted)
        return None if raw is None else float(raw)

    async def pending_codes(self) -> set[str]:
        """Codes of unexpired claims; expired ones are dropped on the way."""
        now = self._clock()
        codes = await self._store.hash_get_all(self._claims)
        expired = [code for code, expires in codes.items() if float(expires) <= now]
        if expired:
            await self._store.hash_delete(self._claims, *expired)
        return set(codes) - set(expired)

    # -- what was found ---------------------------------------------------------------------

    def look_writes(
        self,
        *,
        sightings: dict[str, dict[str, Any]],
        memo: bytes | None,
        status: str | None,
        clear_failure: bool,
    ) -> list[Write]:
        """What a successful look writes, for one :meth:`Store.write_many`: the identities of
        the codes it found, the watcher's memo and the run's status (None: unchanged), and
        the failure of an earlier look cleared. The version moves if exchanges can have
        something new to read. The sightings and the memo are fields of one hash written by
        one command: a memo that says a log was read never stands without what it found."""
        writes: list[Write] = []
        if clear_failure:
            writes.append(Delete(self._failure))
        fields = {code: json.dumps(identity).encode() for code, identity in sightings.items()}
        if memo is not None:
            fields[MEMO_FIELD] = memo
        if fields:
            writes.append(HashPut(self._sightings, fields, ttl=self._ttl))
        if status is not None:
            writes.append(Put(self._status, status.encode(), ttl=self._ttl))
        if sightings or clear_failure:
            writes.append(Bump(self._version, ttl=self._ttl))
        return writes

    def view_reads(self, codes: Sequence[str]) -> list[Get | HashGet]:
        """The reads of a :class:`RunView` of ``codes``, for :meth:`Store.read_many`."""
        return [
            Get(self._version),
            Get(self._failure),
            *(HashGet(self._sightings, code) for code in codes),
        ]

    @staticmethod
    def view_of(codes: Sequence[str], values: Sequence[bytes | None]) -> RunView:
        """The view from the answers to :meth:`view_reads`."""
        version, failure, *sightings = values
        return RunView(
            int(version or 0),
            None if failure is None else Failure.decode(failure),
            {
                code: None if raw is None else dict(json.loads(raw))
                for code, raw in zip(codes, sightings, strict=True)
            },
        )

    async def failure(self) -> Failure | None:
        raw = await self._store.get(self._failure)
        return None if raw is None else Failure.decode(raw)

    async def set_failure(self, failure: Failure) -> None:
        await self._store.write_many(
            [Put(self._failure, failure.encode(), ttl=self._ttl), Bump(self._version, self._ttl)]
        )

    async def status(self) -> str | None:
        raw = await self._store.get(self._status)
        return None if raw is None else raw.decode()

    async def pull_request(self) -> dict[str, Any] | None:
        raw = await self._store.get(self._pull)
        return None if raw is None else dict(json.loads(raw))

    async def set_pull_request(self, pull: dict[str, Any]) -> None:
        await self._store.set(self._pull, json.dumps(pull).encode(), ttl=self._ttl)

    # -- the watcher's memory ---------------------------------------------------------------

    async def memo(self) -> Memo:
        return Memo.decode(await self._store.hash_get(self._sightings, MEMO_FIELD))

    # -- who watches, and who waits ---------------------------------------------------------

    def want_write(self) -> Write:
        """An exchange is waiting now: the holder looks at once and keeps looking often."""
        return Put(self._wanted, repr(self._clock()).encode(), ttl=self._ttl)

    async def wanted_at(self) -> float | None:
        raw = await self._store.get(self._wanted)
        return None if raw is None else float(raw)

    async def take_lease(self, holder: str, ttl: float) -> bool:
        return await self._store.set(self._lease, holder.encode(), ttl=ttl, only_if_absent=True)

    async def renew_lease(self, holder: str, ttl: float) -> bool:
        encoded = holder.encode()
        return await self._store.compare_and_set(self._lease, encoded, encoded, ttl=ttl)

    async def release_lease(self, holder: str) -> None:
        # The store has no compare-and-delete: an expiry of one millisecond does the same.
        await self._store.compare_and_set(self._lease, holder.encode(), b"-", ttl=0.001)
