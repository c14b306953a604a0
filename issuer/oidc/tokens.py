"""The claims of an issued token, and signing it.

Claim names and string values follow GitHub Actions' own OIDC tokens, so that verifiers
written for those read ours unchanged. Every value comes from GitHub's answers.
"""

from __future__ import annotations

import secrets
from typing import Any

from joserfc import jwt

from issuer.github.channels import Sighting
from issuer.github.facts import PullRequestFacts, RunFacts
from issuer.oidc.keys import SigningKey

NOT_BEFORE_BACKDATE = 300
"""Seconds ``nbf`` lies before ``iat``, as in GitHub Actions' own tokens: a verifier whose
clock runs up to this far behind the issuer's still accepts a fresh token (node ``jose``
allows no skew on ``nbf`` by default)."""


def runner_environment(runner_group_name: str | None) -> str | None:
    if runner_group_name is None:
        return None
    return "github-hosted" if runner_group_name == "GitHub Actions" else "self-hosted"


def identity_claims(
    *,
    issuer: str,
    run: RunFacts,
    sighting: Sighting,
    pull_request: PullRequestFacts | None = None,
) -> dict[str, Any]:
    """Who the token is about: fixed once the line was seen, whenever the token is signed.

    The audience is the claim's, added with the token's lifetime. ``pull_request`` is the one
    :func:`issuer.github.pulls.find_pull_request` vouched for, if any: never the run's
    ``pull_requests`` unchecked (GitHub lists pull requests matched by head, not the one that
    ran)."""
    repo = run.repository
    head = run.head_repository
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": f"repo:{repo.full_name}:pull_request",
        "repository": repo.full_name,
        "repository_id": str(repo.id),
        "repository_owner": repo.owner_login,
        "repository_owner_id": str(repo.owner_id),
        "repository_visibility": repo.visibility,
        "run_id": str(run.id),
        "run_number": str(run.run_number),
        "run_attempt": str(run.run_attempt),
        "event_name": run.event,
        "sha": run.head_sha,
        "head_sha": run.head_sha,
        "head_ref": run.head_branch,
        "head_repository": head.full_name,
        "head_repository_id": str(head.id),
        "head_repository_owner": head.owner_login,
        "head_repository_owner_id": str(head.owner_id),
        "actor": run.actor_login,
        "actor_id": str(run.actor_id),
        "workflow": run.name,
        "job_id": str(sighting.job_id),
        "challenge_channel": sighting.channel,
    }
    if run.path:
        claims["workflow_path"] = run.path
    environment = runner_environment(sighting.runner_group_name)
    if environment is not None:
        claims["runner_environment"] = environment
    pull = pull_request
    if pull is not None:
        claims["pull_request_number"] = str(pull.number)
        claims["base_ref"] = pull.base_ref
        claims["ref"] = f"refs/pull/{pull.number}/merge"
    return claims


def with_lifetime(identity: dict[str, Any], *, audience: str, now: int, ttl: int) -> dict[str, Any]:
    """The identity plus its audience, when the token is valid (``nbf`` set back from ``iat``
    by :data:`NOT_BEFORE_BACKDATE`), and a unique ``jti``."""
    return {
        **identity,
        "aud": audience,
        "iat": now,
        "nbf": now - NOT_BEFORE_BACKDATE,
        "exp": now + ttl,
        "jti": secrets.token_urlsafe(16),
    }


def sign(claims: dict[str, Any], key: SigningKey) -> str:
    return jwt.encode({"alg": key.alg, "kid": key.kid, "typ": "JWT"}, claims, key.key)
