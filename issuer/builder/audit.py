"""The audit trail: one JSON line per exchange (granted or refused, with the reason) and per
builder start and stop, each also counted in a metric.

Lines carry the token's ``jti``, issuer, repository and run id, never a token, a build token,
a credential or a key. Refusals before the signature verified carry nothing from the token:
an unverified claim is whatever the sender wrote.
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any

from issuer.builder import metrics
from issuer.builder.verify import VerifiedToken

log = logging.getLogger("issuer.builder.audit")

TOKEN_FIELDS = ("repository", "run_id", "run_attempt", "sub", "event_name", "head_repository")


def _emit(event: str, **fields: Any) -> None:
    line = {"ts": round(time.time(), 3), "event": event}
    line.update({k: v for k, v in fields.items() if v is not None})
    log.info(json.dumps(line, separators=(",", ":"), sort_keys=False))


def token_fields(token: VerifiedToken | None) -> dict[str, Any]:
    if token is None:
        return {}
    fields: dict[str, Any] = {"issuer": token.issuer, "jti": token.jti}
    fields.update({name: token.claim(name) for name in TOKEN_FIELDS})
    return fields


def exchange_granted(
    token: VerifiedToken, project: str, relationship_id: str, reason: str, builder_id: str
) -> None:
    metrics.EXCHANGES.labels("granted", "granted").inc()
    _emit(
        "exchange",
        outcome="granted",
        project=project,
        relationship=relationship_id,
        why=reason,
        builder_id=builder_id,
        **token_fields(token),
    )


def exchange_refused(
    reason: str,
    code: str,
    description: str,
    *,
    project: str | None = None,
    token: VerifiedToken | None = None,
    why: str | None = None,
) -> None:
    """``why`` is the operator's account (what each relationship trusts); the caller got
    only ``description``."""
    metrics.EXCHANGES.labels("refused", reason).inc()
    _emit(
        "exchange",
        outcome="refused",
        reason=reason,
        error=code,
        error_description=description,
        why=why,
        project=project,
        verified=token is not None,
        **token_fields(token),
    )


def builder_started(
    backend: str, builder_id: str, project: str, expires_at: int, token: VerifiedToken
) -> None:
    metrics.BUILDERS_STARTED.labels(backend).inc()
    metrics.BUILDERS_LIVE.inc()
    _emit(
        "builder_started",
        backend=backend,
        builder_id=builder_id,
        project=project,
        expires_at=expires_at,
        **token_fields(token),
    )


def builder_stopped(builder_id: str, reason: str, project: str | None) -> None:
    metrics.BUILDERS_STOPPED.labels(reason).inc()
    metrics.BUILDERS_LIVE.dec()
    _emit("builder_stopped", builder_id=builder_id, reason=reason, project=project)
