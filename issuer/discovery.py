"""The OpenID Provider metadata a verifier discovers the issuer by."""

from __future__ import annotations

import json

from issuer.keys import Keyring

CLAIMS_SUPPORTED = [
    "iss",
    "aud",
    "sub",
    "iat",
    "nbf",
    "exp",
    "jti",
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
    "job_id",
    "runner_environment",
    "challenge_channel",
    "pull_request_number",
    "base_ref",
    "ref",
]


def discovery_document(issuer: str, keyring: Keyring) -> bytes:
    document = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": sorted({key.alg for key in keyring.keys}),
        "scopes_supported": ["openid"],
        "claims_supported": CLAIMS_SUPPORTED,
    }
    return json.dumps(document, separators=(",", ":")).encode()
