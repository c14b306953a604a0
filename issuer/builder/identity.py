"""The identity claims of a verified token: only what GitHub itself would sign.

GitHub's Actions tokens carry every identity claim as a string (ids are strings of digits)
and build ``sub`` from the repository and the event. A token of a trusted issuer that breaks
either rule is refused, naming the claim: a ``run_id`` that is a list cannot be traced back
to a run, and a ``sub`` naming another repository than ``repository`` would mislead any
verifier, audit line or build token that reads ``sub``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from issuer.builder import errors

STRING_CLAIMS = (
    "sub",
    "repository",
    "repository_id",
    "repository_owner",
    "repository_owner_id",
    "repository_visibility",
    "run_id",
    "run_number",
    "run_attempt",
    "event_name",
    "sha",
    "head_sha",
    "head_ref",
    "head_repository",
    "head_repository_id",
    "head_repository_owner",
    "head_repository_owner_id",
    "actor",
    "actor_id",
    "workflow",
    "workflow_path",
    "workflow_ref",
    "job_workflow_ref",
    "job_id",
    "pull_request_number",
    "base_ref",
    "ref",
    "environment",
    "runner_environment",
)
"""The identity claims the service reads, matches or records: strings wherever present."""

REQUIRED_CLAIMS = ("sub", "repository", "event_name", "run_id", "run_attempt")
"""Present and non-empty in every token: the trust relationships match ``repository`` and
``event_name``; the audit, the build token and the per-run limit name the run."""

NUMBER_CLAIMS = frozenset(
    {
        "repository_id",
        "repository_owner_id",
        "run_id",
        "run_number",
        "run_attempt",
        "head_repository_id",
        "head_repository_owner_id",
        "actor_id",
        "job_id",
        "pull_request_number",
    }
)
"""Ids and counters: GitHub writes them as strings of decimal digits."""

_DIGITS = re.compile(r"[0-9]{1,20}")


def check_identity(claims: Mapping[str, Any]) -> None:
    """Raise :class:`errors.Refused` (``invalid_grant``) naming the first claim that is
    missing, of the wrong type or malformed, or a ``sub`` that disagrees."""
    for name in REQUIRED_CLAIMS:
        if claims.get(name) is None:
            raise errors.CLAIM_MISSING.error(name)
    for name in STRING_CLAIMS:
        value = claims.get(name)
        if value is None:
            continue
        if not isinstance(value, str):
            raise errors.CLAIM_INVALID.error(f"{name} must be a string")
        if name in NUMBER_CLAIMS and not _DIGITS.fullmatch(value):
            raise errors.CLAIM_INVALID.error(f"{name} must be a string of digits")
    for name in REQUIRED_CLAIMS:
        if not claims[name]:
            raise errors.CLAIM_INVALID.error(f"{name} must not be empty")
    expected = expected_subject(claims)
    if claims["sub"] != expected:
        raise errors.SUBJECT_MISMATCH.error(f"expected {expected}")


def expected_subject(claims: Mapping[str, Any]) -> str:
    """``sub`` as GitHub builds it (its default template): ``repo:OWNER/REPO:`` then
    ``environment:NAME`` for a job with an environment, ``pull_request`` for a pull_request
    event, else ``ref:REF``. Raises CLAIM_MISSING when the token lacks what its form needs."""
    prefix = f"repo:{claims['repository']}:"
    environment = claims.get("environment")
    if environment:
        return f"{prefix}environment:{environment}"
    if claims["event_name"] == "pull_request":
        return f"{prefix}pull_request"
    ref = claims.get("ref")
    if not ref:
        event = claims["event_name"]
        raise errors.CLAIM_MISSING.error(f"ref (the sub of a {event} token names it)")
    return f"{prefix}ref:{ref}"
