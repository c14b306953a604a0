"""Webhook deliveries as GitHub sends them to a GitHub App: signed POSTs, sent once.

The simulator hands each delivery over (already JSON: what the run looked like then) and goes
on; a background thread of its own sends them, so neither the simulator's lock nor the test
waits on the receiver. A failed delivery (no connection, an answer other than 2xx) is not
retried, as on GitHub; `redeliver` sends one again, as GitHub's "Redeliver" button does. The
switches a test can flip (late, twice, out of order, lost) are the simulator's settings
(`webhook_*`); every attempt is recorded in a log without the secret.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import random
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import httpx

from issuer.sim.settings import SimSettings

USER_AGENT = "GitHub-Hookshot/8e4a2f1"
_IDLE_EXIT_SECONDS = (
    2.0  # the sending thread ends when idle this long; the next delivery starts one
)
_REORDER_HOLD_SECONDS = 1.0  # a held batch not yet full goes out after this long anyway
_POLL_SECONDS = 0.05
_TIMEOUT_SECONDS = 10.0


@dataclass(frozen=True)
class Target:
    """Where deliveries go. The secret never shows in a repr, a log or an answer."""

    url: str
    secret: bytes = field(repr=False)
    hook_id: int


@dataclass(frozen=True)
class Delivery:
    """One delivery as GitHub stores it: a redelivery sends the same body and id again."""

    delivery_id: str
    event: str
    action: str
    body: bytes
    app_id: int  # the GitHub App whose installation the delivery is for


@dataclass
class Attempt:
    """One entry of the delivery log: a send (or a drop) of a delivery."""

    delivery_id: str
    event: str
    action: str
    outcome: str  # "delivered" (2xx), "failed" (no answer or another status), "dropped"
    status_code: int | None = None
    error: str | None = None  # the exception's kind when nothing answered
    redelivery: bool = False
    duplicate: bool = False
    payload: Any = None

    def as_dict(self, *, with_payload: bool = True) -> dict[str, Any]:
        entry = {
            "delivery_id": self.delivery_id,
            "event": self.event,
            "action": self.action,
            "outcome": self.outcome,
            "status_code": self.status_code,
            "error": self.error,
            "redelivery": self.redelivery,
            "duplicate": self.duplicate,
        }
        if with_payload:
            entry["payload"] = self.payload
        return entry


@dataclass
class _Outgoing:
    delivery: Delivery
    target: Target
    queued_at: float
    redelivery: bool = False
    duplicate: bool = False


def signature(secret: bytes, body: bytes) -> str:
    """`X-Hub-Signature-256`: HMAC-SHA256 of the exact body bytes."""
    return "sha256=" + hmac.new(secret, body, hashlib.sha256).hexdigest()


def headers_for(target: Target, delivery: Delivery) -> dict[str, str]:
    return {
        "Accept": "*/*",
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "X-GitHub-Event": delivery.event,
        "X-GitHub-Delivery": delivery.delivery_id,
        "X-GitHub-Hook-ID": str(target.hook_id),
        "X-GitHub-Hook-Installation-Target-Type": "integration",
        "X-GitHub-Hook-Installation-Target-ID": str(delivery.app_id),
        "X-Hub-Signature": "sha1="
        + hmac.new(target.secret, delivery.body, hashlib.sha1).hexdigest(),
        "X-Hub-Signature-256": signature(target.secret, delivery.body),
    }


class WebhookSender:
    """Queues deliveries and sends them from a thread of its own. Thread-safe."""

    def __init__(
        self, settings: SimSettings, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._settings = settings
        self._clock = clock  # real time: the switches' delays are waited for, not simulated
        self._cond = threading.Condition()
        self._target: Target | None = None
        self._ready: list[_Outgoing] = []  # in sending order, each sent once its delay passed
        self._held: list[_Outgoing] = []  # held back to be sent in reverse order (reorder)
        self._held_since = 0.0
        self._sending = 0
        self._thread: threading.Thread | None = None
        self._log: list[Attempt] = []
        self._sent: dict[str, Delivery] = {}
        self._drop_next = 0
        self._seed: int | None = None
        self._rng = random.Random()  # noqa: S311  (a test's reproducible losses, not secrecy)

    # -- configuration ------------------------------------------------------------------

    def deliver_to(self, target: Target | None) -> None:
        """Send later deliveries to `target`; None: stop making deliveries."""
        with self._cond:
            self._target = target

    @property
    def target(self) -> Target | None:
        with self._cond:
            return self._target

    def drop_next(self, count: int) -> None:
        """The next `count` deliveries are lost (recorded as dropped, never sent)."""
        with self._cond:
            self._drop_next += count

    # -- what the simulator calls -------------------------------------------------------

    def send(self, event: str, action: str, payload: dict[str, Any], app_id: int) -> None:
        """A new delivery of `payload`, sent as the switches say. No target: nothing."""
        body = json.dumps(payload, separators=(",", ":")).encode()
        delivery = Delivery(str(uuid.uuid4()), event, action, body, app_id)
        with self._cond:
            target = self._target
            if target is None:
                return
            self._sent[delivery.delivery_id] = delivery
            if self._dropped():
                self._log.append(
                    Attempt(delivery.delivery_id, event, action, "dropped", payload=payload)
                )
                return
            now = self._clock()
            copies = 2 if self._settings.webhook_duplicate else 1
            for copy in range(copies):
                self._queue(_Outgoing(delivery, target, now, duplicate=copy > 0))
            self._cond.notify_all()
            self._ensure_thread()

    def redeliver(self, delivery_id: str) -> None:
        """Send a delivery again (same id, same body) to the current target, at once: no
        switch applies. KeyError if no such delivery was made."""
        with self._cond:
            delivery = self._sent[delivery_id]
            if self._target is None:
                raise ValueError("no delivery target")
            self._ready.append(_Outgoing(delivery, self._target, self._clock(), redelivery=True))
            self._cond.notify_all()
            self._ensure_thread()

    def _dropped(self) -> bool:
        settings = self._settings
        if settings.webhook_drop:
            return True
        if self._drop_next > 0:
            self._drop_next -= 1
            return True
        if settings.webhook_drop_probability > 0:
            if self._seed != settings.webhook_seed:
                self._seed = settings.webhook_seed
                self._rng = random.Random(self._seed)  # noqa: S311
            return self._rng.random() < settings.webhook_drop_probability
        return False

    def _queue(self, outgoing: _Outgoing) -> None:
        batch = self._settings.webhook_reorder
        if batch <= 1:
            self._ready.append(outgoing)
            return
        if not self._held:
            self._held_since = self._clock()
        self._held.append(outgoing)
        if len(self._held) >= batch:
            self._release_held()

    def _release_held(self) -> None:
        self._ready.extend(reversed(self._held))
        self._held.clear()

    # -- what a test reads --------------------------------------------------------------

    def log(self) -> list[Attempt]:
        with self._cond:
            return list(self._log)

    def idle(self) -> bool:
        """Nothing queued, held or being sent."""
        with self._cond:
            return not (self._ready or self._held or self._sending)

    def release(self) -> None:
        """Send what is held for reordering now (in reverse order), without waiting."""
        with self._cond:
            self._release_held()
            self._cond.notify_all()
            if self._ready:
                self._ensure_thread()

    def flush(self, timeout: float = 30.0) -> bool:
        """`release`, then wait until everything queued was sent (delayed ones included, once
        their delay passed). False if `timeout` came first."""
        deadline = time.monotonic() + timeout
        self.release()
        with self._cond:
            while self._ready or self._held or self._sending:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._cond.wait(min(left, _POLL_SECONDS))
            return True

    # -- the sending thread -------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None or not self._thread.is_alive():
            self._thread = threading.Thread(target=self._run, name="sim-webhooks", daemon=True)
            self._thread.start()

    def _next(self) -> _Outgoing | None:
        """The next delivery due, waiting for one; None once idle for a while."""
        idle_since = self._clock()
        while True:
            now = self._clock()
            if self._held and now - self._held_since >= _REORDER_HOLD_SECONDS:
                self._release_held()
            if self._ready:
                delay = self._settings.webhook_delay
                for index, outgoing in enumerate(self._ready):
                    if outgoing.redelivery or now >= outgoing.queued_at + delay:
                        return self._ready.pop(index)
                idle_since = now
            elif self._held:
                idle_since = now
            elif now - idle_since >= _IDLE_EXIT_SECONDS:
                self._thread = None
                return None
            self._cond.wait(_POLL_SECONDS)

    def _run(self) -> None:
        with httpx.Client(timeout=_TIMEOUT_SECONDS, trust_env=False) as client:
            while True:
                with self._cond:
                    outgoing = self._next()
                    if outgoing is None:
                        return
                    self._sending += 1
                attempt = self._post(client, outgoing)
                with self._cond:
                    self._sending -= 1
                    self._log.append(attempt)
                    self._cond.notify_all()

    def _post(self, client: httpx.Client, outgoing: _Outgoing) -> Attempt:
        delivery = outgoing.delivery
        attempt = Attempt(
            delivery.delivery_id,
            delivery.event,
            delivery.action,
            "failed",
            redelivery=outgoing.redelivery,
            duplicate=outgoing.duplicate,
            payload=json.loads(delivery.body),
        )
        try:
            response = client.post(
                outgoing.target.url,
                content=delivery.body,
                headers=headers_for(outgoing.target, delivery),
            )
        except Exception as exc:  # any failure to deliver is recorded, never raised
            attempt.error = type(exc).__name__
            return attempt
        attempt.status_code = response.status_code
        if 200 <= response.status_code < 300:
            attempt.outcome = "delivered"
        return attempt
