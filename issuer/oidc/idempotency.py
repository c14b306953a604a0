"""``Idempotency-Key`` on ``POST /claim``: a retry of a claim answers the claim it made.

A client whose 201 was lost on the way claims again; with the same key it gets the same
claim back instead of a second one (which would contest its own relay slot, or spend a
claim). The first request with a key reserves it (``SET NX``), makes the claim, and keeps
its answer for the claim's lifetime, sealed under the key (:mod:`issuer.oidc.sealed`; the
store holds only the key's SHA-256). A twin that arrives while the first is still at work
waits for its answer. The same key with another request is refused: a key names one
request, not a client.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from issuer.oidc.sealed import seal, unseal
from issuer.store import Store, tagged
from issuer.web.errors import ApiError, invalid_request

KEY = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
RESERVED_FOR = 10.0  # seconds a reservation stands without an answer (a replica died mid-claim)
TWIN_STEP = 0.05


def parse_key(header: str | None) -> str | None:
    """The ``Idempotency-Key`` header's value, None if absent; 400 if malformed (the value
    is never echoed: it is a secret, as good as the claim it answers)."""
    if header is None:
        return None
    if not KEY.match(header):
        raise invalid_request("Idempotency-Key must be 1 to 64 of A-Z, a-z, 0-9, '-' and '_'")
    return header


@dataclass(frozen=True)
class _Kept:
    """What is kept under a key: the SHA-256 of the request it was first used with, and the
    answer sealed (empty while it is being made)."""

    request: str
    sealed: bytes

    def encode(self) -> bytes:
        return self.request.encode() + b":" + self.sealed

    @classmethod
    def decode(cls, raw: bytes) -> _Kept:
        request, _, sealed = raw.partition(b":")
        return cls(request.decode(), sealed)


class IdempotentClaims:
    """Answers of claims made with a key, kept until their claims expire."""

    def __init__(
        self, store: Store, *, clock: Callable[[], float] = time.time, timeout: float = 5.0
    ) -> None:
        self._store = store
        self._clock = clock
        self._timeout = timeout

    async def answer(
        self,
        key: str,
        request: Any,
        make: Callable[[], Awaitable[dict[str, Any]]],
        *,
        kept_for: Callable[[dict[str, Any]], float],
    ) -> dict[str, Any]:
        """The answer made earlier with ``key`` for the same ``request``; else ``make()``'s,
        kept for ``kept_for(answer)`` seconds. 422 if ``key`` came with another request."""
        digest = hashlib.sha256(f"idempotency-key:{key}".encode()).hexdigest()
        record = tagged(f"idem:{digest}", "claim")
        fingerprint = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        reservation = _Kept(fingerprint, b"").encode()
        deadline = self._clock() + self._timeout
        while True:
            raw = await self._store.get(record)
            if raw is None:
                reserved = await self._store.set(
                    record, reservation, ttl=RESERVED_FOR, only_if_absent=True
                )
                if reserved:
                    break
                continue  # a twin reserved it first: read what it wrote
            kept = _Kept.decode(raw)
            if kept.request != fingerprint:
                raise ApiError(
                    422,
                    "invalid_request",
                    "this Idempotency-Key came with another claim request: send a new key "
                    "with each new claim, and the same key only with its retries",
                )
            if kept.sealed:
                opened = unseal(key, kept.sealed, bound_to=digest)
                if opened is None:  # cannot happen but for a SHA-256 collision
                    raise ApiError(500, "server_error", "the kept claim could not be opened")
                answer: dict[str, Any] = json.loads(opened)
                return answer
            if self._clock() >= deadline:
                raise ApiError(
                    503,
                    "temporarily_unavailable",
                    "the first request with this Idempotency-Key is still being answered",
                    retry_after=1,
                )
            await asyncio.sleep(TWIN_STEP)
        try:
            answer = await make()
        except Exception:
            with contextlib.suppress(Exception):  # the claim was not made: a retry may make it
                await self._store.delete(record)
            raise
        sealed = seal(key, json.dumps(answer).encode(), bound_to=digest)
        kept = _Kept(fingerprint, sealed)
        await self._store.set(record, kept.encode(), ttl=kept_for(answer))
        return answer
