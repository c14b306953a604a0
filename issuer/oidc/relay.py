"""The challenge relay: a second job prints the challenge of a claim it never holds.

GitHub serves a job's log only once the job has completed, so the job that exchanges a claim
cannot be the one whose log shows the line. Handing the claim to another job would put the
capability in a public step header (the runner prints a step's ``with:`` and ``env:`` before
anything can mask them). The relay turns this around, so that no secret crosses jobs::

    build job   POST /claim {..., "run_attempt": A, "relay": SLOT}    keeps the claim id in memory
                POST /exchange?wait=S (claim id as bearer)            long polls
    relay job   GET /relay/OWNER/REPO/runs/RUN/attempts/A/SLOT?wait=S  the slot's challenge line
                prints it and completes: its log (or annotation) shows the line to the issuer

The two jobs run in parallel (no ``needs:``). A challenge code is a nonce, useful only to
whoever can make the run print it, so ``GET /relay`` is public. But anyone can claim a slot,
so **a slot admits exactly one claim**: a second claim on the same repository, run, attempt
and slot makes it *contested* for as long as the slot is kept, and a contested slot yields a
token to nobody (``GET /relay`` answers 409 ``relay_contested``; an exchange of any of its
claims 403 ``run_rejected``, checked again right before a token is signed). A stranger can
deny a run its token this way, but cannot take it (docs/threat-model.md has the residual race).

A claim that names a slot contests it even when it is refused (a rate limit, the run's cap):
otherwise a stranger could claim the slot first, then keep the real job's claim out by
exhausting a limit, and the relay job would print the stranger's code unopposed.

Each slot is one hash in the shared store, under its own hash tag, kept for the claim TTL:
field = SHA-256 of a claim id (never the id), value = the claim's code and expiry; or, for a
refused claim, ``refused:`` and a random suffix. Fields are only ever added, so once
contested, a slot stays contested.

``GET /relay`` asks GitHub nothing. Its work is bounded: a long poll of at most 30 s reads the
slot once a second; a replica holds at most :attr:`RelayLimits.max_waiting` such polls at
once (beyond that, polls answer without waiting); and each client address may poll at most
:attr:`RelayLimits.polls_per_address` times per window (429 ``rate_limited`` beyond).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from prometheus_client import Counter

from issuer.oidc import challenge
from issuer.store import Store, tagged
from issuer.web.errors import ApiError

log = logging.getLogger(__name__)

SLOT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
REFUSED = "refused:"  # the field of a refused claim: never a digest (64 hex digits)
SLOT_RULE = "1 to 64 characters of A-Z, a-z, 0-9, '.', '_' and '-'"
MAX_WAIT = 30
TICK = 1.0  # seconds between two reads of a slot during a long poll
CLOCK_SLACK = 60  # the slot outlives its last claim by this much: replicas' clocks differ

RELAY_ANSWERS = Counter(
    "issuer_relay_answers_total",
    "Answers of GET /relay, by outcome (relayed, pending, contested, expired, rate_limited)",
    ["outcome"],
)
RELAY_CONTESTS = Counter(
    "issuer_relay_slots_contested_total", "Relay slots that received a second claim"
)


@dataclass(frozen=True)
class SlotKey:
    """One relay slot of one attempt of a run. The repository is compared case-insensitively,
    as GitHub compares names; the slot exactly."""

    repository: str
    run_id: int
    run_attempt: int
    slot: str

    @property
    def tag(self) -> str:
        return f"relay:{self.repository.lower()}:{self.run_id}:{self.run_attempt}:{self.slot}"

    def describe(self) -> str:
        return (
            f"relay slot {self.slot!r} of {self.repository} run {self.run_id} "
            f"attempt {self.run_attempt}"
        )


class Verdict(Enum):
    """What a slot says about one of its claims."""

    ONLY = "only"  # the claim is the slot's one claim: it may get its token
    CONTESTED = "contested"  # the slot holds more than one claim: no token for anyone
    GONE = "gone"  # the slot no longer holds the claim (it expired)


@dataclass(frozen=True)
class Relayed:
    code: str
    expires_at: int

    @property
    def challenge_line(self) -> str:
        return challenge.challenge_line(self.code)


@dataclass(frozen=True)
class RelayPending:
    description: str
    retry_after: int


@dataclass(frozen=True)
class RelayLimits:
    polls_per_address: int = 120  # per window; 0: no limit
    window: int = 60
    max_waiting: int = 1000  # long polls waiting at once on one replica


def contested_description(key: SlotKey) -> str:
    """The cause and the fix, for both the relay job and the exchanging job."""
    return (
        f"{key.describe()} was claimed more than once: someone raced this run for its token, "
        "so no claim on the slot gets one; re-run the workflow (a new attempt has fresh slots)"
    )


class RelaySlots:
    """The relay slots of every run, in the shared store."""

    def __init__(
        self,
        store: Store,
        *,
        claim_ttl: int,
        poll_interval: int,
        stopping: asyncio.Event,
        limits: RelayLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._store = store
        self._ttl = claim_ttl + CLOCK_SLACK
        self._poll_interval = poll_interval
        self._stopping = stopping
        self.limits = limits or RelayLimits()
        self._clock = clock
        self._waiting = 0

    @property
    def waiting(self) -> int:
        """Long polls waiting on this replica now."""
        return self._waiting

    @staticmethod
    def _key(key: SlotKey) -> str:
        return tagged(key.tag, "claims")

    async def _entries(self, key: SlotKey) -> dict[str, bytes]:
        return await self._store.hash_get_all(self._key(key))

    async def register(self, key: SlotKey, digest: str, code: str, expires_at: int) -> None:
        """Record a claim (by the digest of its id) in its slot; a second claim contests it."""
        value = json.dumps({"code": code, "expires_at": expires_at}).encode()
        await self._store.hash_set(self._key(key), digest, value, ttl=self._ttl)
        entries = await self._entries(key)
        if _contested(entries):
            RELAY_CONTESTS.inc()
            log.warning("%s now holds %d claims: contested", key.describe(), len(entries))

    async def refused(self, key: SlotKey) -> None:
        """A claim on the slot was refused: the slot is contested all the same."""
        field = REFUSED + secrets.token_hex(8)
        await self._store.hash_set(self._key(key), field, b"{}", ttl=self._ttl)
        RELAY_CONTESTS.inc()
        log.warning("%s: a claim on it was refused: contested", key.describe())

    async def verdict(self, key: SlotKey, digest: str) -> Verdict:
        entries = await self._entries(key)
        if _contested(entries):
            return Verdict.CONTESTED
        if digest not in entries:
            return Verdict.GONE
        return Verdict.ONLY

    async def check_rate(self, address: str) -> None:
        """Count one ``GET /relay`` of ``address``; 429 over the limit."""
        limit = self.limits.polls_per_address
        if limit == 0:
            return
        window = self.limits.window
        now = self._clock()
        index = int(now // window)
        ends = (index + 1) * window
        count = await self._store.incr(
            tagged(f"relay-rate:{address}", str(window), str(index)), ttl=ends - now + 1
        )
        if count > limit:
            RELAY_ANSWERS.labels("rate_limited").inc()
            retry_after = max(1, math.ceil(ends - now))
            raise ApiError(
                429,
                "rate_limited",
                f"too many relay polls from this client address: at most {limit} every "
                f"{window} s; try again in {retry_after} s",
                retry_after=retry_after,
            )

    async def relay(self, key: SlotKey, wait: float) -> Relayed | RelayPending:
        """The slot's one claim's challenge, waiting up to ``wait`` (at most 30 s) for it.

        Raises ApiError 409 ``relay_contested`` or 410 ``claim_expired``."""
        deadline = self._clock() + min(max(wait, 0.0), MAX_WAIT)
        if self._waiting >= self.limits.max_waiting:
            deadline = 0.0  # this replica holds enough long polls: answer now
        self._waiting += 1
        try:
            while True:
                entries = await self._entries(key)
                if _contested(entries):
                    RELAY_ANSWERS.labels("contested").inc()
                    raise ApiError(409, "relay_contested", contested_description(key))
                if entries:
                    return self._relayed(key, next(iter(entries.values())))
                remaining = deadline - self._clock()
                if remaining <= 0 or self._stopping.is_set():
                    break
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), min(remaining, TICK))
        finally:
            self._waiting -= 1
        RELAY_ANSWERS.labels("pending").inc()
        return RelayPending(
            f"no claim on {key.describe()} yet: the exchanging job claims it at its first "
            f"step (`issuer token --relay {key.slot}`)",
            self._poll_interval,
        )

    def _relayed(self, key: SlotKey, raw: bytes) -> Relayed:
        entry = json.loads(raw)
        expires_at = int(entry["expires_at"])
        if self._clock() >= expires_at:
            RELAY_ANSWERS.labels("expired").inc()
            raise ApiError(
                410,
                "claim_expired",
                f"the claim on {key.describe()} expired before it was relayed; re-run the workflow",
            )
        RELAY_ANSWERS.labels("relayed").inc()
        return Relayed(str(entry["code"]), expires_at)


def _contested(entries: dict[str, bytes]) -> bool:
    return len(entries) > 1 or any(field.startswith(REFUSED) for field in entries)
