"""Every refusal of the builder service: an RFC 6749 error code, a status, and a fixed,
documented description (docs/builder.md lists them all; a test keeps the two in step).

A refusal may add a detail after the fixed text (which parameter, which rule), never a
secret: no token, no build token, no admin token, no key material, and never what a trust
relationship trusts (that goes only to the operator, as ``operator_detail`` in the audit).
"""

from __future__ import annotations

from dataclasses import dataclass

from issuer.web.errors import ApiError


@dataclass(frozen=True)
class Refusal:
    reason: str
    """A short stable name: the audit line's ``reason`` and the metrics label."""
    code: str
    status: int
    description: str
    retry_after: int | None = None

    def error(
        self,
        detail: str | None = None,
        *,
        retry_after: int | None = None,
        operator_detail: str | None = None,
    ) -> Refused:
        return Refused(
            self,
            detail,
            retry_after=retry_after or self.retry_after,
            operator_detail=operator_detail,
        )


class Refused(ApiError):
    """An :class:`ApiError` that remembers which :class:`Refusal` it is."""

    def __init__(
        self,
        refusal: Refusal,
        detail: str | None = None,
        *,
        retry_after: int | None = None,
        operator_detail: str | None = None,
    ) -> None:
        text = refusal.description if not detail else f"{refusal.description}: {detail}"
        super().__init__(refusal.status, refusal.code, text, retry_after=retry_after)
        self.refusal = refusal
        self.operator_detail = operator_detail
        """What only the audit line may say (the values a relationship trusts)."""


def _r(reason: str, code: str, status: int, description: str, retry: int | None = None) -> Refusal:
    refusal = Refusal(reason, code, status, description, retry)
    CATALOG[reason] = refusal
    return refusal


CATALOG: dict[str, Refusal] = {}

# The request (RFC 8693 section 2.1, RFC 6749 section 5.2).
FORM_REQUIRED = _r(
    "form_required",
    "invalid_request",
    400,
    "the request must be form-encoded (application/x-www-form-urlencoded)",
)
FORM_MALFORMED = _r(
    "form_malformed", "invalid_request", 400, "the request body is not valid form encoding"
)
PARAMETER_REPEATED = _r(
    "parameter_repeated", "invalid_request", 400, "a parameter appears more than once"
)
PARAMETER_MISSING = _r("parameter_missing", "invalid_request", 400, "a parameter is missing")
GRANT_TYPE = _r(
    "grant_type",
    "unsupported_grant_type",
    400,
    "grant_type must be urn:ietf:params:oauth:grant-type:token-exchange",
)
SUBJECT_TOKEN_TYPE = _r(
    "subject_token_type",
    "invalid_request",
    400,
    "subject_token_type must be urn:ietf:params:oauth:token-type:id_token"
    " or urn:ietf:params:oauth:token-type:jwt",
)
REQUESTED_TOKEN_TYPE = _r(
    "requested_token_type",
    "invalid_request",
    400,
    "requested_token_type, when given, must be urn:ietf:params:oauth:token-type:access_token",
)
ACTOR_TOKEN = _r(
    "actor_token", "invalid_request", 400, "delegation is not supported: send no actor_token"
)
RESOURCE = _r(
    "resource", "invalid_target", 400, "resource is not supported: name the project in audience"
)
PROJECT_MALFORMED = _r(
    "project_malformed",
    "invalid_target",
    400,
    "audience must name a project: letters, digits and . _ - / : @, at most 200 characters",
)
PROJECT_UNKNOWN = _r(
    "project_unknown", "invalid_target", 400, "no trust relationship names this project"
)

# The subject token (RFC 8725).
TOKEN_MALFORMED = _r(
    "token_malformed",
    "invalid_grant",
    400,
    "the subject_token is not a JWS in compact serialization",
)
ALG_REFUSED = _r(
    "alg_refused", "invalid_grant", 400, "the token's alg is not one this service accepts"
)
KID_MISSING = _r("kid_missing", "invalid_grant", 400, "the token's header names no kid")
KID_MALFORMED = _r(
    "kid_malformed",
    "invalid_grant",
    400,
    "the token's kid is not a string of 1 to 256 printable characters",
)
CRIT_UNSUPPORTED = _r(
    "crit_unsupported",
    "invalid_grant",
    400,
    "the token's header marks an extension critical (crit); this service understands none",
)
HEADER_MALFORMED = _r(
    "header_malformed", "invalid_grant", 400, "a parameter of the token's header is malformed"
)
PAYLOAD_MALFORMED = _r(
    "payload_malformed", "invalid_grant", 400, "the token's payload is not a JSON object"
)
ISSUER_UNTRUSTED = _r(
    "issuer_untrusted",
    "invalid_grant",
    400,
    "the token's issuer is not one of this service's trusted issuers",
)
KID_UNKNOWN = _r("kid_unknown", "invalid_grant", 400, "the token's kid is not in its issuer's JWKS")
KEY_MISMATCH = _r(
    "key_mismatch", "invalid_grant", 400, "the issuer's key for this kid does not fit the alg"
)
SIGNATURE_INVALID = _r(
    "signature_invalid",
    "invalid_grant",
    400,
    "the token's signature does not verify with its issuer's key",
)
AUDIENCE_MISMATCH = _r(
    "audience_mismatch", "invalid_grant", 400, "the token's aud is not this service's audience"
)
CLAIM_MISSING = _r("claim_missing", "invalid_grant", 400, "the token lacks a required claim")
CLAIM_INVALID = _r("claim_invalid", "invalid_grant", 400, "a claim of the token is malformed")
SUBJECT_MISMATCH = _r(
    "sub_mismatch",
    "invalid_grant",
    400,
    "the token's sub is not repo:REPOSITORY:CONTEXT as GitHub builds it for its event",
)
LIFETIME_TOO_LONG = _r(
    "lifetime_too_long",
    "invalid_grant",
    400,
    "the token lives longer than this service accepts (exp - iat over BUILDER_MAX_TOKEN_LIFETIME)",
)
EXPIRED = _r("expired", "invalid_grant", 400, "the token has expired")
NOT_YET_VALID = _r(
    "not_yet_valid", "invalid_grant", 400, "the token is not valid yet (nbf is in the future)"
)
ISSUED_IN_FUTURE = _r(
    "issued_in_future", "invalid_grant", 400, "the token was issued in the future (iat)"
)
REPLAYED = _r(
    "replayed", "invalid_grant", 400, "the token was already exchanged (its jti was used)"
)
ISSUER_UNAVAILABLE = _r(
    "issuer_unavailable",
    "temporarily_unavailable",
    503,
    "the token's issuer could not be reached for its keys; try again",
    10,
)

# The trust relationships and the builder.
TRUST_DENIED = _r(
    "trust_denied", "access_denied", 403, "no trust relationship of this project allows the token"
)
PUSH_TAG = _r(
    "push_tag",
    "invalid_grant",
    400,
    "the relationship pushes images, and the token has neither pull_request_number and head_sha"
    " nor run_id and run_attempt to tag them with",
)
BUILDER_LIMIT = _r(
    "builder_limit",
    "temporarily_unavailable",
    429,
    "the project has as many live builders as its trust relationship allows;"
    " release one (DELETE its endpoint) or wait until one expires",
)
RUN_BUILDER_LIMIT = _r(
    "run_builder_limit",
    "temporarily_unavailable",
    429,
    "this run has as many live builders in the project as the service allows one run"
    " (BUILDER_MAX_BUILDERS_PER_RUN); release one (DELETE its endpoint) or wait until one expires",
)
HEAD_REPOSITORY_BUILDER_LIMIT = _r(
    "head_repository_builder_limit",
    "temporarily_unavailable",
    429,
    "the pull request's head repository has as many live builders in the project as the"
    " service allows one (BUILDER_MAX_BUILDERS_PER_HEAD_REPOSITORY); release one (DELETE its"
    " endpoint) or wait until one expires",
)
LIMIT_REACHED = {
    "project": BUILDER_LIMIT,
    "run": RUN_BUILDER_LIMIT,
    "head_repository": HEAD_REPOSITORY_BUILDER_LIMIT,
}
"""The refusal of each limit :meth:`BuilderRegistry.reserve` may report."""
NOT_EPHEMERAL = _r(
    "not_ephemeral",
    "server_error",
    500,
    "a pull_request token only ever gets an ephemeral builder without a cache,"
    " and the backend offered another",
)
BACKEND_FAILED = _r(
    "backend_failed", "temporarily_unavailable", 503, "the builder could not be started", 5
)

# Introspection and the builders' calls (RFC 7662).
BUILDER_CLIENT = _r(
    "builder_client", "invalid_client", 401, "the builder's credentials are missing or wrong"
)

# The admin API.
ADMIN_OFF = _r(
    "admin_off", "not_found", 404, "the admin API is off: BUILDER_ADMIN_TOKEN is not set"
)
ADMIN_TOKEN = _r("admin_token", "invalid_token", 401, "the admin API needs the admin bearer token")
RELATIONSHIP_INVALID = _r(
    "relationship_invalid", "invalid_request", 400, "the trust relationship is refused"
)
RELATIONSHIP_UNKNOWN = _r(
    "relationship_unknown", "not_found", 404, "no trust relationship of this project has this id"
)

# A builder (its own process).
BUILD_TOKEN = _r(
    "build_token", "invalid_token", 401, "the build token is not active for this builder"
)
BUILDER_BUSY = _r("builder_busy", "conflict", 409, "a build is already running on this builder")
CONTEXT_INVALID = _r(
    "context_invalid", "invalid_request", 400, "the build context is not a usable tar archive"
)
BUILD_PARAMETER = _r("build_parameter", "invalid_request", 400, "a build parameter is malformed")
NO_IMAGE = _r("no_image", "not_found", 404, "no image was built on this builder yet")
CONTEXT_TOO_LARGE = _r(
    "context_too_large", "request_too_large", 413, "the build context is too large"
)
INTROSPECTION_FAILED = _r(
    "introspection_failed",
    "temporarily_unavailable",
    503,
    "the builder service could not be asked about the build token",
    5,
)
