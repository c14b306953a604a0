"""The claim lifecycle: create, look, and exchange once.

States, kept in the shared store under one hash tag per claim (the claim id is stored
only as its SHA-256, so the store holds no capability):

    pending ──line seen in the run──▶ seen ──first exchange wins (SET NX)──▶ used
       │                                                      any state ──▶ expired

A look at GitHub that does not find the line, or that fails, leaves the claim pending: only
handing out its token uses a claim up. Looks are shared: at most one per poll interval per
claim across all replicas, and once one replica has seen the line every replica knows it.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from issuer import challenge
from issuer.config import IssuerConfig
from issuer.errors import ApiError, invalid_request
from issuer.github.errors import GitHubError, GitHubUnavailable
from issuer.keys import SigningKey
from issuer.metrics import CLAIMS, TOKENS
from issuer.store import Store, tagged
from issuer.tokens import identity_claims, sign, with_lifetime
from issuer.watcher import Look, RunRejected, RunWatcher

log = logging.getLogger(__name__)

RETENTION = 3600  # how long an expired or used claim is remembered, to answer 410
MAX_WAIT = 30
WAIT_TICK = 0.25
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
        self.seen = tagged(f"claim:{digest}", "seen")
        self.used = tagged(f"claim:{digest}", "used")
        self.looking = tagged(f"claim:{digest}", "looking")
        self.status = tagged(f"claim:{digest}", "status")


class ClaimService:
    def __init__(
        self,
        config: IssuerConfig,
        store: Store,
        watcher: RunWatcher,
        signing_key: Callable[[], SigningKey],
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._config = config
        self._store = store
        self._watcher = watcher
        self._signing_key = signing_key
        self._clock = clock

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
        CLAIMS.labels("created").inc()
        return {
            "claim_id": claim_id,
            "challenge_code": code,
            "challenge_line": challenge.challenge_line(code),
            "exchange_url": f"{self._config.issuer_url}/exchange/{claim_id}",
            "expires_at": expires_at,
            "poll_interval": self._config.poll_interval,
        }

    async def exchange(self, claim_id: str, wait: float) -> Issued | Pending:
        """The token once the line was seen; Pending until then. Raises ApiError."""
        if not _CLAIM_ID.match(claim_id):
            raise ApiError(404, "claim_not_found", "no such claim")
        keys = _Keys(_digest(claim_id))
        raw = await self._store.get(keys.record)
        if raw is None:
            raise ApiError(404, "claim_not_found", "no such claim (it may have expired long ago)")
        record = ClaimRecord(**json.loads(raw))
        deadline = self._clock() + min(max(wait, 0.0), MAX_WAIT)
        unavailable: GitHubUnavailable | None = None
        while True:
            self._refuse_if_spent(record, await self._store.get(keys.used))
            try:
                seen = await self._seen(record, keys)
                unavailable = None
            except GitHubUnavailable as exc:
                seen, unavailable = None, exc
            except GitHubError as exc:  # an answer we cannot use: not the caller's fault
                log.warning("unusable GitHub answer: %s", exc)
                seen, unavailable = None, GitHubUnavailable(str(exc), retry_after=30)
            if seen is not None:
                return await self._issue(record, keys, seen)
            remaining = min(deadline, record.expires_at) - self._clock()
            if remaining <= 0 or (unavailable and unavailable.retry_after > remaining):
                break
            await asyncio.sleep(min(WAIT_TICK, remaining))
        if unavailable is not None:
            raise ApiError(
                503,
                "github_unavailable",
                f"GitHub could not be read: {unavailable}; the claim is still pending",
                retry_after=unavailable.retry_after,
            )
        self._refuse_if_spent(record, None)
        status = await self._store.get(keys.status)
        description = status.decode() if status else "waiting for the first look at the run"
        return Pending(description, self._config.poll_interval)

    def _refuse_if_spent(self, record: ClaimRecord, used: bytes | None) -> None:
        if used is not None:
            raise ApiError(410, "claim_used", "this claim has already yielded its token")
        if self._clock() >= record.expires_at:
            raise ApiError(410, "claim_expired", "this claim expired before its line was seen")

    async def _seen(self, record: ClaimRecord, keys: _Keys) -> dict[str, Any] | None:
        """The token's GitHub-derived claims once the line was seen, else None."""
        stored = await self._store.get(keys.seen)
        if stored is not None:
            return dict(json.loads(stored))
        looked = await self._store.set(
            keys.looking, b"1", ttl=self._config.poll_interval, only_if_absent=True
        )
        if not looked:
            return None  # another exchange, maybe on another replica, looked moments ago
        try:
            look = await self._watcher.look(
                record.repository, record.run_id, record.run_attempt, record.code
            )
        except RunRejected as exc:
            CLAIMS.labels("rejected").inc()
            raise ApiError(403, "run_rejected", str(exc)) from None
        except GitHubError:
            # A failed look tells nothing about the run: let the next exchange look again (a
            # resting credential answers at once, without asking GitHub).
            await self._store.delete(keys.looking)
            raise
        if look.sighting is None:
            await self._store.set(keys.status, _waiting(look).encode(), ttl=RETENTION)
            return None
        claims = identity_claims(
            issuer=self._config.issuer_url,
            audience=record.audience,
            run=look.run,
            sighting=look.sighting,
        )
        ttl = record.expires_at - self._clock() + RETENTION
        await self._store.set(keys.seen, json.dumps(claims).encode(), ttl=max(ttl, 1))
        log.info(
            "challenge seen in %s run %s attempt %s, job %s, via %s",
            record.repository,
            look.run.id,
            look.run.run_attempt,
            look.sighting.job_id,
            look.sighting.channel,
        )
        return claims

    async def _issue(self, record: ClaimRecord, keys: _Keys, seen: dict[str, Any]) -> Issued:
        now = int(self._clock())
        ttl = self._config.token_ttl
        claims = with_lifetime(seen, now=now, ttl=ttl)
        token = sign(claims, self._signing_key())
        won = await self._store.set(
            keys.used, b"1", ttl=max(record.expires_at - now + RETENTION, 1), only_if_absent=True
        )
        if not won:
            raise ApiError(410, "claim_used", "this claim has already yielded its token")
        TOKENS.labels(seen.get("challenge_channel", "unknown")).inc()
        log.info("token %s issued for %s run %s", claims["jti"], seen["repository"], seen["run_id"])
        return Issued(token, ttl)


def _waiting(look: Look) -> str:
    """What the run is waiting for, for the workflow's author."""
    running = [job.name for job in look.jobs if not job.completed][:5]
    done = sum(job.completed for job in look.jobs)
    waiting = f"; still running: {', '.join(running)}" if running else ""
    return (
        f"the challenge line has not been seen in run {look.run.id} attempt "
        f"{look.run.run_attempt} yet ({done} of {len(look.jobs)} jobs completed{waiting}): "
        "GitHub serves a job's log only once the job has completed, so print the line in a "
        "job that finishes before this exchange, or as a ::notice:: annotation"
    )
