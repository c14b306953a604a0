"""The claim lifecycle: create, wait for the line, and exchange once.

States, kept in the shared store under one hash tag per claim (the claim id is stored
only as its SHA-256, so the store holds no capability):

    pending ──line seen in the run──▶ seen ──first exchange wins (SET NX)──▶ used
       │                                                      any state ──▶ expired

Claims do not look at GitHub themselves: each registers its code with its run, and the one
watcher of that run (:mod:`issuer.watch`) records every code it sees there. A look that
finds nothing, or fails, leaves the claim pending: only handing out its token uses it up.
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
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from issuer import challenge
from issuer.config import IssuerConfig
from issuer.errors import ApiError, invalid_request
from issuer.keys import SigningKey
from issuer.metrics import CLAIMS, TOKENS
from issuer.runs import FAILURE_REJECTED, FAILURE_UNAVAILABLE, Failure, RunKey, RunState
from issuer.store import Store, tagged
from issuer.tokens import sign, with_lifetime
from issuer.watch import RunWatches

log = logging.getLogger(__name__)

RETENTION = 3600  # how long an expired or used claim is remembered, to answer 410
MAX_WAIT = 30
FIRST_LOOK_WAIT = 5
TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"

_OWNER = r"[A-Za-z0-9](?:[A-Za-z0-9]|-(?=[A-Za-z0-9])){0,38}"
_REPOSITORY = re.compile(rf"^{_OWNER}/[A-Za-z0-9._-]{{1,100}}$")
_CLAIM_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_MAX_ID = 2**63 - 1


@dataclass(frozen=True)
class ClaimRequest:
    repository: str
    run_id: int
    run_attempt: int | None
    audience: str


@dataclass(frozen=True)
class ClaimRecord:
    repository: str
    run_id: int
    run_attempt: int | None
    audience: str
    code: str
    expires_at: int


@dataclass(frozen=True)
class Issued:
    token: str
    expires_in: int


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
    if not isinstance(repository, str) or not _REPOSITORY.match(repository):
        raise invalid_request("repository must be OWNER/REPO as GitHub names repositories")
    if repository.split("/")[1] in (".", ".."):
        raise invalid_request("repository must be OWNER/REPO as GitHub names repositories")
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
    return ClaimRequest(repository, run_id, run_attempt, audience)


def _digest(claim_id: str) -> str:
    return hashlib.sha256(claim_id.encode()).hexdigest()


class _Keys:
    def __init__(self, digest: str) -> None:
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

    async def create(self, request: ClaimRequest) -> dict[str, Any]:
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
        )
        keys = _Keys(_digest(claim_id))
        await self._store.set(
            keys.record,
            json.dumps(asdict(record)).encode(),
            ttl=self._config.claim_ttl + RETENTION,
        )
        await self._watches.claimed(_run_key(record), code, expires_at)
        CLAIMS.labels("created").inc()
        return {
            "claim_id": claim_id,
            "challenge_code": code,
            "challenge_line": challenge.challenge_line(code),
            "exchange_url": f"{self._config.issuer_url}/exchange/{claim_id}",
            "expires_at": expires_at,
            "poll_interval": self._config.poll_interval,
        }

    async def begin_shutdown(self) -> None:
        """Answer every waiting exchange now (pending, to be retried elsewhere) and hand this
        replica's runs over to the others."""
        self._stopping.set()
        await self._watches.close()

    async def exchange(self, claim_id: str, wait: float) -> Issued | Pending:
        """The token once the line was seen; Pending until then. Raises ApiError."""
        if not _CLAIM_ID.match(claim_id):
            raise ApiError(404, "claim_not_found", "no such claim")
        keys = _Keys(_digest(claim_id))
        raw = await self._store.get(keys.record)
        if raw is None:
            raise ApiError(404, "claim_not_found", "no such claim (it may have expired long ago)")
        record = ClaimRecord(**json.loads(raw))
        key = _run_key(record)
        state = self._watches.state(key)
        deadline = self._clock() + min(max(wait, 0.0), MAX_WAIT)
        # Even an exchange that will not wait gets the verdict of the run's first look.
        first_look_by = self._clock() + FIRST_LOOK_WAIT
        self._refuse_if_spent(record, await self._store.get(keys.used))
        seen = await state.sighting(record.code)
        if seen is not None:
            return await self._issue(record, keys, seen)
        if self._stopping.is_set():
            return await self._pending(record, state)
        asked_at = self._clock()
        async with self._watches.waiting(key) as follower:
            while True:
                self._refuse_if_spent(record, await self._store.get(keys.used))
                seen = await state.sighting(record.code)
                if seen is not None:
                    return await self._issue(record, keys, seen)
                failure = await state.failure()
                if failure is not None and failure.at < asked_at:
                    failure = None  # from a look older than this exchange: wait for a fresh one
                if failure is not None and failure.kind == FAILURE_REJECTED:
                    CLAIMS.labels("rejected").inc()
                    raise ApiError(403, "run_rejected", failure.message)
                now = self._clock()
                remaining = min(deadline, record.expires_at) - now
                if self._stopping.is_set():
                    break
                if remaining <= 0:
                    if now >= first_look_by or await self._looked(state, failure):
                        break
                    remaining = first_look_by - now
                if failure is not None and failure.until - now > remaining:
                    break  # GitHub rests longer than this exchange may wait
                await follower.wait(min(remaining, 1.0))
        return await self._pending(record, state)

    @staticmethod
    async def _looked(state: RunState, failure: Failure | None) -> bool:
        return failure is not None or await state.status() is not None

    async def _pending(self, record: ClaimRecord, state: RunState) -> Pending:
        """What the exchange answers when it stops waiting without a token."""
        failure = await state.failure()
        now = self._clock()
        if failure is not None and failure.kind == FAILURE_UNAVAILABLE and failure.until > now:
            raise ApiError(
                503,
                "github_unavailable",
                f"GitHub could not be read: {failure.message}; the claim is still pending",
                retry_after=max(1, math.ceil(failure.until - now)),
            )
        self._refuse_if_spent(record, None)
        description = await state.status() or "waiting for the first look at the run"
        return Pending(description, self._config.poll_interval)

    def _refuse_if_spent(self, record: ClaimRecord, used: bytes | None) -> None:
        if used is not None:
            raise ApiError(410, "claim_used", "this claim has already yielded its token")
        if self._clock() >= record.expires_at:
            raise ApiError(410, "claim_expired", "this claim expired before its line was seen")

    async def _issue(self, record: ClaimRecord, keys: _Keys, seen: dict[str, Any]) -> Issued:
        now = int(self._clock())
        ttl = self._config.token_ttl
        claims = with_lifetime(seen, audience=record.audience, now=now, ttl=ttl)
        token = sign(claims, self._signing_key())
        won = await self._store.set(
            keys.used, b"1", ttl=max(record.expires_at - now + RETENTION, 1), only_if_absent=True
        )
        if not won:
            raise ApiError(410, "claim_used", "this claim has already yielded its token")
        TOKENS.labels(seen.get("challenge_channel", "unknown")).inc()
        log.info("token %s issued for %s run %s", claims["jti"], seen["repository"], seen["run_id"])
        return Issued(token, ttl)


def _run_key(record: ClaimRecord) -> RunKey:
    return RunKey(record.repository, record.run_id, record.run_attempt)
