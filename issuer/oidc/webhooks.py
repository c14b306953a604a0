"""GitHub's webhook deliveries (``POST /github/webhook``): when to look, never what was seen.

A delivery is checked before anything else: its ``X-Hub-Signature-256`` must be the
HMAC-SHA256 of the exact body under ``ISSUER_GITHUB_WEBHOOK_SECRET``, compared in constant
time, before the body is parsed. A delivery id (``X-GitHub-Delivery``) is taken once, by
whichever replica gets it first: GitHub may send one twice, and a redelivery asked for by
hand repeats the id.

What a delivery changes:

- the repository is marked as one whose deliveries arrive (for :data:`HOOKED_FOR`): its
  watched runs are no longer polled while exchanges wait, only safety-polled;
- ``workflow_job`` ``completed``: if the job's run is watched, the watcher reads that job
  (and only that one) at once, through the API;
- ``workflow_run`` ``completed``: the watcher reads the run again (through the API).

Nothing of a payload reaches a token or decides a challenge: the watcher reads the job, its
log and the run from GitHub's API, as it would without deliveries. So a forged delivery
(were the secret to leak) could only make the issuer look sooner, at its own cost.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from issuer.oidc.runs import RUN_HINT, RunKey, hooked_key
from issuer.oidc.watch import RunWatches
from issuer.store import Put, Store, Write
from issuer.web.errors import ApiError, invalid_request

log = logging.getLogger(__name__)

MAX_DELIVERY_BYTES = 1024 * 1024  # workflow events are tens of KiB; GitHub caps at 25 MB
DELIVERY_KEPT = 7 * 24 * 3600.0  # a delivery id is remembered this long (redeliveries: days)
HOOKED_FOR = 600.0  # a repository counts as delivering this long after its last delivery
DELIVERY_PREFIX = "gh:delivery:"
EVENTS = ("workflow_job", "workflow_run")

_SIGNATURE = re.compile(r"^sha256=([0-9a-fA-F]{64})$")
_DELIVERY = re.compile(r"^[A-Za-z0-9-]{1,64}$")
_REPOSITORY = re.compile(r"^[A-Za-z0-9-]{1,39}/[A-Za-z0-9._-]{1,100}$")


def bad_signature() -> ApiError:
    return ApiError(
        401,
        "invalid_signature",
        "X-Hub-Signature-256 must be sha256= and the HMAC-SHA256 of the body under the "
        "App's webhook secret",
    )


@dataclass(frozen=True)
class Delivery:
    """What the issuer reads of a delivery: where, and what happened."""

    event: str
    action: str
    repository: str
    run_id: int
    run_attempt: int
    job_id: int | None  # workflow_job only


class WebhookReceiver:
    def __init__(
        self,
        secret: bytes,
        store: Store,
        watches: RunWatches,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._secret = secret
        self._store = store
        self._watches = watches
        self._clock = clock

    def verify(self, signature: str | None, body: bytes) -> None:
        """Raise 401 unless ``signature`` is the body's HMAC under the secret."""
        match = _SIGNATURE.match(signature or "")
        expected = hmac.new(self._secret, body, hashlib.sha256).hexdigest()
        # compare_digest runs in constant time: the comparison tells nothing of the secret.
        given = match.group(1).lower() if match else "0" * 64
        if not hmac.compare_digest(given, expected) or match is None:
            raise bad_signature()

    async def receive(self, headers: Mapping[str, str], body: bytes) -> str:
        """Take one delivery: ``"taken"``, ``"duplicate"`` or ``"ignored"``. Raises ApiError
        401 (signature), 400 (not a delivery as GitHub sends them)."""
        self.verify(headers.get("x-hub-signature-256"), body)
        delivery_id = headers.get("x-github-delivery", "")
        if not _DELIVERY.match(delivery_id):
            raise invalid_request("X-GitHub-Delivery must be the delivery's GUID")
        event = headers.get("x-github-event", "")
        if event not in EVENTS:
            return "ignored"  # ping, and events the App may be subscribed to for others
        delivery = parse_delivery(event, body)
        if not await self._store.set(
            DELIVERY_PREFIX + delivery_id, b"1", ttl=DELIVERY_KEPT, only_if_absent=True
        ):
            return "duplicate"
        try:
            await self._take(delivery)
        except BaseException:
            # Not taken after all: GitHub's redelivery (or its retry by hand) must be.
            await self._store.delete(DELIVERY_PREFIX + delivery_id)
            raise
        return "taken"

    async def _take(self, delivery: Delivery) -> None:
        """The repository marked as delivering and, for a completion, a hint to each watched
        run it names: the claims read in one round trip, the writes in another."""
        writes: list[Write] = [
            Put(hooked_key(delivery.repository), repr(self._clock()).encode(), ttl=HOOKED_FOR)
        ]
        hinted: list[RunKey] = []
        if delivery.action == "completed":
            hint = str(delivery.job_id) if delivery.job_id is not None else RUN_HINT
            # A claim names the attempt, or not (then the latest is watched): both may be.
            keys = [
                RunKey(delivery.repository, delivery.run_id, delivery.run_attempt),
                RunKey(delivery.repository, delivery.run_id, None),
            ]
            claimed = await asyncio.gather(*(self._watches.state(k).is_claimed() for k in keys))
            hinted = [key for key, has_claims in zip(keys, claimed, strict=True) if has_claims]
            for key in hinted:
                writes += self._watches.state(key).hint_writes(hint)
        await self._store.write_many(writes)
        for key in hinted:
            self._watches.hinted(key)
            log.info(
                "delivery: %s %s in %s: looking", delivery.event, delivery.action, key.describe()
            )


def parse_delivery(event: str, body: bytes) -> Delivery:
    """The fields of a ``workflow_job`` or ``workflow_run`` delivery; 400 if it is not one."""
    try:
        payload = json.loads(body)
    except ValueError:
        raise invalid_request("the delivery's body is not JSON") from None
    if not isinstance(payload, dict):
        raise invalid_request("the delivery's body is not a JSON object")
    action = payload.get("action")
    repository = _get(payload, "repository", "full_name")
    if not isinstance(action, str) or not isinstance(repository, str):
        raise invalid_request(f"the delivery is not a {event} event: no action or repository")
    if not _REPOSITORY.match(repository):
        raise invalid_request("the delivery's repository is not OWNER/REPO")
    if event == "workflow_job":
        job = payload.get("workflow_job")
        run_id, attempt, job_id = _get(job, "run_id"), _get(job, "run_attempt"), _get(job, "id")
    else:
        run = payload.get("workflow_run")
        run_id, attempt, job_id = _get(run, "id"), _get(run, "run_attempt"), None
    for value in (run_id, attempt, *([job_id] if event == "workflow_job" else [])):
        if not _positive(value):
            raise invalid_request(f"the delivery is not a {event} event: ids missing")
    return Delivery(event, action, repository, run_id, attempt, job_id)


def _get(data: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(data, dict):
            return None
        data = data.get(part)
    return data


def _positive(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 0 < value < 2**63
