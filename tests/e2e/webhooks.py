"""Signed deliveries as GitHub sends them to the issuer, for tests that hand-make them."""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from typing import Any

import httpx

from issuer.sim import SimJob, SimRun

SECRET = "whsec-" + "s" * 32


def signature(body: bytes, secret: str = SECRET) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def deliver(
    http: httpx.Client,
    issuer_url: str,
    event: str,
    payload: dict[str, Any],
    *,
    delivery: str | None = None,
    secret: str = SECRET,
    sign: str | None = None,
) -> httpx.Response:
    """POST ``payload`` as GitHub's delivery of ``event``; ``sign`` overrides the signature
    header ("" sends none)."""
    body = json.dumps(payload).encode()
    headers = {
        "X-GitHub-Event": event,
        "X-GitHub-Delivery": delivery or str(uuid.uuid4()),
        "Content-Type": "application/json",
        "User-Agent": "GitHub-Hookshot/test",
    }
    value = signature(body, secret) if sign is None else sign
    if value:
        headers["X-Hub-Signature-256"] = value
    return http.post(f"{issuer_url}/github/webhook", content=body, headers=headers)


def job_event(job: SimJob, action: str, *, run: SimRun | None = None) -> dict[str, Any]:
    """The fields of a ``workflow_job`` delivery the issuer reads (``run``: claim another)."""
    of = run or job.run
    return {
        "action": action,
        "workflow_job": {
            "id": job.id,
            "run_id": of.id,
            "run_attempt": job.run_attempt,
            "status": job.status,
            "name": job.name,
        },
        "repository": {"full_name": of.repository.full_name},
        "installation": {"id": 1},
    }


def run_event(run: SimRun, action: str) -> dict[str, Any]:
    return {
        "action": action,
        "workflow_run": {"id": run.id, "run_attempt": run.run_attempt, "status": run.status},
        "repository": {"full_name": run.repository.full_name},
        "installation": {"id": 1},
    }
