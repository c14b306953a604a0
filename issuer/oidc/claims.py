"""The claim lifecycle: create, wait for the line, and exchange once.

States, kept in the shared store under one hash tag per claim (the claim id is stored
only as its SHA-256, so the store holds no capability):

    pending ──line seen in the run──▶ seen ──first exchange wins (SET NX)──▶ used
       │                                                      any state ──▶ expired

``used`` holds the claim's one token, sealed under a key derived from the claim id
(:mod:`issuer.oidc.sealed`): the holder's retry, after an answer lost on the way, gets that
same token again until it expires; nobody else can open it.

Claims do not look at GitHub themselves: each registers its code with its run, and the one
watcher of that run (:mod:`issuer.oidc.watch`) records every code it sees there. A look that
finds nothing, or fails, leaves the claim pending: only handing out its token uses it up.

A claim may name a relay slot (:mod:`issuer.oidc.relay`): another job of the run prints its line.
Such a claim gets its token only while it is its slot's one claim, checked right before the
token is signed.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import re
import secrets
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

from issuer.oidc import challenge
from issuer.oidc.config import IssuerConfig
from issuer.oidc.idempotency import IdempotentClaims
from issuer.oidc.keys import SigningKey
from issuer.oidc.metrics import CLAIMS, TOKENS
from issuer.oidc.relay import SLOT, SLOT_RULE, RelaySlots, SlotKey, Verdict, contested_description
from issuer.oidc.runs import (
    FAILURE_REJECTED,
    FAILURE_UNAVAILABLE,
    Failure,
    RunKey,
    RunState,
    RunView,
)
from issuer.oidc.sealed import seal, unseal
from issuer.oidc.tokens import sign, with_lifetime
from issuer.oidc.watch import RunWatches
from issuer.store import Get, Put, Store, Write, tagged
from issuer.web.errors import ApiError, invalid_request

log = logging.getLogger(__name__)

RETENTION = 3600  # how long an expired or used claim is remembered, to answer 410
MAX_WAIT = 30
FIRST_LOOK_WAIT = 5
# A waiting exchange is woken when its run changes; it also reads the store itself after this
# long without a change (a missed wake, a relay slot contested, a claim spent elsewhere).
UNPROMPTED_READ = 5.0
FIRST_LOOK_STEP = 0.25
TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}"
_REPOSITORY = re.compile(rf"^{_OWNER}/[A-Za-z0-9._-]{{1,100}}$")
_CLAIM_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_BEARER = re.compile(r"^Bearer +(\S+) *$", re.IGNORECASE)
_DIGITS = re.compile(r"^[1-9][0-9]{0,18}$")
_MAX_ID = 2**63 - 1
_REPOSITORY_RULE = "repository must be OWNER/REPO as GitHub names repositories"


@dataclass(frozen=True)
class ClaimRequest:
    repository: str
    run_id: int
    run_attempt: int | None
    audience: str
    relay: str | None = None


@dataclass(frozen=True)
class ClaimRecord:
    repository: str
    run_id: int
    run_attempt: int | None
    audience: str
    code: str
    expires_at: int
    relay: str | None = None  # the relay slot, if another job prints the line


@dataclass(frozen=True)
class Issued:
    token: str
    expires_in: int
    again: bool = False  # the same token as an earlier answer (the holder's retry)


@dataclass(frozen=True)
class Pending:
    description: str
    retry_after: int


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool):
        raise invalid_request(f"{name} must be a positive integer")
    if isinstance(value, str) and value.isascii() and value.isdigit():
        value = int(value)
    if not isinstance(value, int) or not 0 < value <= _MAX_ID:
        raise invalid_request(f"{name} must be a positive integer")
    return value


def parse_claim_request(body: Any, config: IssuerConfig) -> ClaimRequest:
    """Validate a ``POST /claim`` body; raises ApiError 400 naming the bad field."""
    if not isinstance(body, dict):
        raise invalid_request("the body must be a JSON object")
    repository = body.get("repository")
    if not isinstance(repository, str) or not _valid_repository(repository):
        raise invalid_request(_REPOSITORY_RULE)
    if "run_id" not in body:
        raise invalid_request("run_id is required")
    run_id = _positive_int(body["run_id"], "run_id")
    attempt = body.get("run_attempt")
    run_attempt = None if attempt is None else _positive_int(attempt, "run_attempt")
    event = body.get("event_name")
    if not isinstance(event, str):
        raise invalid_request("event_name is required")
    if event != "pull_request":
        raise invalid_request(
            f"event_name {event[:40]!r} is refused: only pull_request runs can claim a token"
        )
    audience = body.get("audience")
    if audience is None or audience == "":
        audience = config.audience_when_unnamed
    if not isinstance(audience, str) or len(audience) > 512:
        raise invalid_request("audience must be a string")
    if config.allowed_audiences is not None and audience not in config.allowed_audiences:
        raise ApiError(
            400, "invalid_audience", "this issuer does not issue tokens for that audience"
        )
    relay = body.get("relay")
    if relay is not None:
        if not isinstance(relay, str) or not SLOT.match(relay):
            raise invalid_request(f"relay must be a slot name: {SLOT_RULE}")
        if run_attempt is None:
            raise invalid_request(
                "run_attempt is required with relay: the relay job asks for the slot of one attempt"
            )
    return ClaimRequest(repository, run_id, run_attempt, audience, relay)


def _valid_repository(repository: str) -> bool:
    return bool(_REPOSITORY.match(repository)) and repository.split("/")[1] not in (".", "..")


def _path_int(value: str, name: str) -> int:
    if not _DIGITS.match(value) or int(value) > _MAX_ID:
        raise invalid_request(f"{name} must be a positive integer, in digits")
    return int(value)


def parse_relay_path(params: Mapping[str, str]) -> SlotKey:
    """Validate the path of ``GET /relay/{owner}/{repo}/runs/{run_id}/attempts/{attempt}/{slot}``;
    raises ApiError 400 naming the bad field."""
    owner, repo = params.get("owner", ""), params.get("repo", "")
    if not re.fullmatch(_OWNER, owner):
        raise invalid_request("owner must be a GitHub account name (as in OWNER/REPO)")
    if not _valid_repository(f"{owner}/{repo}"):
        raise invalid_request("repo must be a GitHub repository name (as in OWNER/REPO)")
    run_id = _path_int(params.get("run_id", ""), "run_id")
    attempt = _path_int(params.get("attempt", ""), "attempt")
    slot = params.get("slot", "")
    if not SLOT.match(slot):
        raise invalid_request(f"slot must be {SLOT_RULE}")
    return SlotKey(f"{owner}/{repo}", run_id, attempt, slot)


def invalid_claim(description: str) -> ApiError:
    """401: the exchange's bearer is missing or is not a claim id."""
    return ApiError(
        401, "invalid_claim", description, headers={"WWW-Authenticate": 'Bearer realm="exchange"'}
    )


def claim_id_of(authorization: str | None) -> str:
    """The claim id an exchange presents as ``Authorization: Bearer CLAIM_ID``; raises 401
    ``invalid_claim`` (naming what is wrong, never the value) when there is none."""
    if not authorization:
        raise invalid_claim("send the claim id as `Authorization: Bearer CLAIM_ID`")
    match = _BEARER.match(authorization)
    if match is None or not _CLAIM_ID.match(match.group(1)):
        raise invalid_claim(
            "the Authorization header must be `Bearer CLAIM_ID`, with the claim id exactly as "
            "`POST /claim` handed it out"
        )
    return match.group(1)


def _digest(claim_id: str) -> str:
    return hashlib.sha256(claim_id.encode()).hexdigest()


class _Keys:
    """A claim's keys in the store, and its id (the secret that seals its token)."""

    def __init__(self, claim_id: str) -> None:
        self.claim_id = claim_id
        digest = _digest(claim_id)
        self.digest = digest
        self.record = tagged(f"claim:{digest}", "record")
        self.used = tagged(f"claim:{digest}", "used")


class ClaimService:
    def __init__(
        self,
        config: IssuerConfig,
        store: Store,
        watches: RunWatches,
        signing_key: Callable[[], SigningKey],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._watches = watches
        self._signing_key = signing_key
        self._clock = clock
        self._stopping = asyncio.Event()
        self.idempotent = IdempotentClaims(store, clock=clock)
        self.relay = RelaySlots(
            store,
            claim_ttl=config.claim_ttl,
            poll_interval=config.poll_interval,
            stopping=self._stopping,
            clock=clock,
        )

    async def create(self, request: ClaimRequest, claimant: str | None = None) -> dict[str, Any]:
        """A new claim; ``claimant`` (the client's address) pays for looks at its run."""
        claim_id = secrets.token_urlsafe(32)
        code = challenge.new_code()
        expires_at = int(self._clock()) + self._config.claim_ttl
        record = ClaimRecord(
            request.repository,
            request.run_id,
            request.run_attempt,
            request.audience,
            code,
            expires_at,
            request.relay,
        )
        keys = _Keys(claim_id)
        stored = Put(
            keys.record, json.dumps(asdict(record)).encode(), ttl=self._config.claim_ttl + RETENTION
        )
        await self._watches.claimed(
            _run_key(record), code, expires_at, also=[stored], claimant=claimant
        )
        slot = _slot_of(record)
        if slot is not None:
            # Last: a claim that failed before this point is not in the slot, so its retry
            # does not contest it.
            await self.relay.register(slot, keys.digest, code, expires_at)
        CLAIMS.labels("created").inc()
        return {
            "claim_id": claim_id,
            "challenge_code": code,
            "challenge_line": challenge.challenge_line(code),
            "exchange_url": f"{self._config.issuer_url}/exchange",
            "expires_at": expires_at,
            "poll_interval": self._config.poll_interval,
        }

    async def begin_shutdown(self) -> None:
        """Answer every waiting exchange now (pending, to be retried elsewhere) and hand this
        replica's runs over to the others."""
        self._stopping.set()
        await self._watches.close()

    async def exchange(self, claim_id: str, wait: float) -> Issued | Pending:
        """The token once the line was seen (the same token again to the holder's retry, until
        it expires); Pending until then. Raises ApiError."""
        if not _CLAIM_ID.match(claim_id):
            raise invalid_claim("the bearer is not a claim id as `POST /claim` hands them out")
        keys = _Keys(claim_id)
        raw = await self._store.get(keys.record)
        if raw is None:
            raise ApiError(404, "claim_not_found", "no such claim (it may have expired long ago)")
        record = ClaimRecord(**json.loads(raw))
        key = _run_key(record)
        state = self._watches.state(key)
        deadline = self._clock() + min(max(wait, 0.0), MAX_WAIT)
        # A rest GitHub asks for that ends within this is only a delay: pending, not 503.
        patience = max(min(max(wait, 0.0), MAX_WAIT), float(self._config.poll_interval))
        # Even an exchange that will not wait gets the verdict of the run's first look.
        first_look_by = self._clock() + FIRST_LOOK_WAIT
        async with self._watches.waiting(key, record.code) as waiter:
            # Tells the run's watcher, in the same round trip, that an exchange waits.
            used, view = await self._read(keys, state, record.code, [state.want_write()])
            waiter.saw(view.version)
            if used is not None:
                return self._handed_out(keys, used)
            self._refuse_if_expired(record)
            seen = view.sightings[record.code]
            if seen is not None:
                return await self._issue(record, keys, seen)
            await self._refuse_unless_relay_allows(record, keys)
            if self._stopping.is_set():
                return await self._pending(record, state, patience)
            asked_at = self._clock()
            await self._watches.asked(key)
            while True:
                failure = view.failure
                if failure is not None and failure.at < asked_at:
                    failure = None  # from a look older than this exchange: wait for a fresh one
                if failure is not None and failure.kind == FAILURE_REJECTED:
                    CLAIMS.labels("rejected").inc()
                    raise ApiError(403, "run_rejected", failure.message)
                now = self._clock()
                remaining = min(deadline, record.expires_at) - now
                if self._stopping.is_set():
                    break
                longest = UNPROMPTED_READ
                if remaining <= 0:
                    if now >= first_look_by or await self._looked(state, failure):
                        break
                    # A look that finds nothing changes no version: ask again soon.
                    remaining, longest = first_look_by - now, FIRST_LOOK_STEP
                if failure is not None and failure.until - now > remaining:
                    break  # GitHub rests longer than this exchange may wait
                woken = await waiter.wait(min(remaining, longest))
                if woken is None:
                    used, view = await self._read(keys, state, record.code)
                else:
                    used, view = None, woken  # spent: the write of `used` tells at _issue
                if used is not None:
                    return self._handed_out(keys, used)
                self._refuse_if_expired(record)
                seen = view.sightings[record.code]
                if seen is not None:
                    return await self._issue(record, keys, seen)
                await self._refuse_unless_relay_allows(record, keys)
        return await self._pending(record, state, patience)

    async def _read(
        self, keys: _Keys, state: RunState, code: str, writes: Sequence[Write] = ()
    ) -> tuple[bytes | None, RunView]:
        """Whether the claim was used, and its run's view, in one round trip (with ``writes``
        made after the reads)."""
        values = await self._store.read_many(
            [Get(keys.used), *state.view_reads([code])], writes=writes
        )
        return values[0], RunState.view_of([code], values[1:])

    @staticmethod
    async def _looked(state: RunState, failure: Failure | None) -> bool:
        return failure is not None or await state.status() is not None

    async def _pending(self, record: ClaimRecord, state: RunState, patience: float) -> Pending:
        """What the exchange answers when it stops waiting without a token: pending, also
        while GitHub asks for a rest that ends within ``patience`` (the exchange's wait, or
        the poll interval); 503 for a longer one."""
        self._refuse_if_expired(record)
        failure = await state.failure()
        now = self._clock()
        if failure is not None and failure.kind == FAILURE_UNAVAILABLE and failure.until > now:
            rest = max(1, math.ceil(failure.until - now))
            if failure.until - now > patience:
                raise ApiError(
                    503,
                    "github_unavailable",
                    f"GitHub could not be read: {failure.message}; the claim is still pending",
                    retry_after=rest,
                )
            return Pending(
                f"GitHub could not be read ({failure.message}); the issuer reads again in "
                f"{rest} s; the claim is still pending",
                max(rest, self._config.poll_interval),
            )
        description = await state.status() or "waiting for the first look at the run"
        return Pending(description, self._config.poll_interval)

    def _handed_out(self, keys: _Keys, used: bytes) -> Issued:
        """The token this claim already yielded, for its holder's retry; 410 once expired."""
        opened = unseal(keys.claim_id, used, bound_to=keys.digest)
        sealed = None if opened is None else json.loads(opened)
        now = int(self._clock())
        if sealed is None or sealed["expires_at"] <= now:
            raise ApiError(
                410, "claim_used", "this claim has already yielded its token, which has expired"
            )
        log.info("a claim's token handed out again to its holder (an earlier answer was lost?)")
        return Issued(sealed["token"], sealed["expires_at"] - now, again=True)

    def _refuse_if_expired(self, record: ClaimRecord) -> None:
        if self._clock() >= record.expires_at:
            raise ApiError(410, "claim_expired", "this claim expired before its line was seen")

    async def _refuse_unless_relay_allows(self, record: ClaimRecord, keys: _Keys) -> None:
        """A claim on a relay slot gets a token only while it is the slot's one claim."""
        slot = _slot_of(record)
        if slot is None:
            return
        verdict = await self.relay.verdict(slot, keys.digest)
        if verdict is Verdict.CONTESTED:
            CLAIMS.labels("contested").inc()
            raise ApiError(403, "run_rejected", contested_description(slot))
        if verdict is Verdict.GONE:
            raise ApiError(410, "claim_expired", "this claim expired before its line was seen")

    async def _issue(self, record: ClaimRecord, keys: _Keys, seen: dict[str, Any]) -> Issued:
        # Right before signing: a second claim on the slot may have landed while this one
        # waited, even after its line was seen.
        await self._refuse_unless_relay_allows(record, keys)
        now = int(self._clock())
        ttl = self._config.token_ttl
        claims = with_lifetime(seen, audience=record.audience, now=now, ttl=ttl)
        token = sign(claims, self._signing_key())
        kept_token = json.dumps({"token": token, "expires_at": now + ttl}).encode()
        sealed = seal(keys.claim_id, kept_token, bound_to=keys.digest)
        # Kept while the claim or its token lives, and an hour more to answer 410.
        kept = max(record.expires_at - now, ttl) + RETENTION
        won = await self._store.set(keys.used, sealed, ttl=kept, only_if_absent=True)
        if not won:  # a concurrent exchange of the same claim (its holder) won: its token
            used = await self._store.get(keys.used)
            if used is None:
                raise ApiError(410, "claim_used", "this claim has already yielded its token")
            return self._handed_out(keys, used)
        TOKENS.labels(seen.get("challenge_channel", "unknown")).inc()
        log.info("token %s issued for %s run %s", claims["jti"], seen["repository"], seen["run_id"])
        return Issued(token, ttl)


def _run_key(record: ClaimRecord) -> RunKey:
    return RunKey(record.repository, record.run_id, record.run_attempt)


def _slot_of(record: ClaimRecord) -> SlotKey | None:
    if record.relay is None or record.run_attempt is None:
        return None
    return SlotKey(record.repository, record.run_id, record.run_attempt, record.relay)
