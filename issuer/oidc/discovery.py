"""The two public documents, discovery and JWKS, prepared once per keyring change.

Each is rendered to bytes with its strong ETag and cache headers when the keyring changes,
so a request costs a dictionary lookup and a comparison, never a JSON encoding.

The discovery document follows GitHub Actions' own: no ``authorization_endpoint`` or
``token_endpoint``, because this issuer is no OAuth authorization server (tokens come from
``/exchange``, not from an interactive or token grant). OpenID Connect Discovery makes
``RS256`` mandatory in ``id_token_signing_alg_values_supported``, so it is always listed,
even when every published key is ES256; each JWKS entry names its one algorithm.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from issuer.oidc.keys import JWKS_MAX_AGE, Keyring

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


@dataclass(frozen=True)
class Prepared:
    """A document's bytes and the headers every answer for it carries."""

    body: bytes
    media_type: str
    headers: dict[str, str]
    raw_headers: tuple[tuple[bytes, bytes], ...]
    """The headers of a 200, encoded once: a request copies them, never builds them."""
    raw_headers_304: tuple[tuple[bytes, bytes], ...]

    @classmethod
    def of(cls, body: bytes, media_type: str, max_age: int = JWKS_MAX_AGE) -> Prepared:
        etag = '"' + hashlib.sha256(body).hexdigest()[:32] + '"'
        headers = {"Cache-Control": f"public, max-age={max_age}", "ETag": etag}
        raw_304 = tuple((k.lower().encode(), v.encode()) for k, v in headers.items())
        raw = (
            *raw_304,
            (b"content-type", media_type.encode()),
            (b"content-length", str(len(body)).encode()),
        )
        return cls(body, media_type, headers, raw, raw_304)

    @property
    def etag(self) -> str:
        return self.headers["ETag"]

    def not_modified(self, if_none_match: str | None) -> bool:
        """True if ``If-None-Match`` names this version (RFC 9110: weak comparison)."""
        if not if_none_match:
            return False
        tags = {tag.strip().removeprefix("W/") for tag in if_none_match.split(",")}
        return "*" in tags or self.etag in tags


@dataclass(frozen=True)
class Published:
    discovery: Prepared
    jwks: Prepared


def publish(issuer: str, keyring: Keyring) -> Published:
    """Both documents for ``keyring``: called at start and whenever the keyring changes."""
    return Published(
        discovery=Prepared.of(discovery_document(issuer, keyring), "application/json"),
        jwks=Prepared.of(keyring.jwks_bytes, "application/jwk-set+json"),
    )


def discovery_document(issuer: str, keyring: Keyring) -> bytes:
    document = {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/.well-known/jwks",
        "response_types_supported": ["id_token"],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": sorted(
            {"RS256", *(key.alg for key in keyring.keys)}
        ),
        "scopes_supported": ["openid"],
        "claims_supported": CLAIMS_SUPPORTED,
    }
    return json.dumps(document, separators=(",", ":")).encode()
