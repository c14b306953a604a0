"""The token exchange (RFC 8693), from a subject token to a build token and its builder.

``exchange`` checks the request's parameters, verifies the token (:mod:`.verify`), finds the
project's trust relationships and evaluates them (:mod:`.policy`), claims the token's ``jti``
(so that two concurrent exchanges of one token give one builder), counts the builder against
the relationship's ``max_builders`` and the service's per-run and per-head-repository limits,
mints the build token, and starts the builder. Every outcome is one audit line.
"""

from __future__ import annotations

import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from issuer.builder import audit, errors
from issuer.builder.backend import BackendError, Builder, BuilderBackend, BuilderSpec, OnStopped
from issuer.builder.buildtokens import BuildTokenInfo, BuildTokens
from issuer.builder.policy import evaluate
from issuer.builder.registry import (
    BuilderRecord,
    BuilderRegistry,
    Limits,
    RunLimits,
    Slot,
    credential_hash,
)
from issuer.builder.relationships import PROJECT, TrustRelationship
from issuer.builder.truststore import TrustStore
from issuer.builder.verify import TokenVerifier, VerifiedToken

GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
SUBJECT_TOKEN_TYPES = (
    "urn:ietf:params:oauth:token-type:id_token",
    "urn:ietf:params:oauth:token-type:jwt",
)
ACCESS_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:access_token"


@dataclass(frozen=True)
class ExchangeRequest:
    subject_token: str
    project: str


def parse_exchange_request(form: Mapping[str, str]) -> ExchangeRequest:
    """The parameters of RFC 8693 section 2.1; raises Refused."""
    grant_type = form.get("grant_type")
    if grant_type is None:
        raise errors.PARAMETER_MISSING.error("grant_type")
    if grant_type != GRANT_TYPE:
        raise errors.GRANT_TYPE.error()
    for name in ("subject_token", "subject_token_type", "audience"):
        if not form.get(name):
            raise errors.PARAMETER_MISSING.error(name)
    if form["subject_token_type"] not in SUBJECT_TOKEN_TYPES:
        raise errors.SUBJECT_TOKEN_TYPE.error()
    if form.get("requested_token_type", ACCESS_TOKEN_TYPE) != ACCESS_TOKEN_TYPE:
        raise errors.REQUESTED_TOKEN_TYPE.error()
    if "actor_token" in form or "actor_token_type" in form:
        raise errors.ACTOR_TOKEN.error()
    if "resource" in form:
        raise errors.RESOURCE.error()
    project = form["audience"]
    if not PROJECT.fullmatch(project):
        raise errors.PROJECT_MALFORMED.error()
    return ExchangeRequest(form["subject_token"], project)


@dataclass(frozen=True)
class Granted:
    build_token: str
    builder: Builder
    expires_in: int

    def as_json(self) -> dict[str, object]:
        """The RFC 8693 section 2.2.1 answer, plus the builder (API.md section 2)."""
        return {
            "access_token": self.build_token,
            "issued_token_type": ACCESS_TOKEN_TYPE,
            "token_type": "Bearer",
            "expires_in": self.expires_in,
            "builder": self.builder.as_json(),
        }


def image_tag(claims: Mapping[str, object]) -> str | None:
    """The tag a pushed image gets, from the token alone: ``pr-{number}-{head_sha[:12]}``, or
    ``run-{run_id}-{run_attempt}`` without a pull request number; None if neither can be made."""
    number, sha = claims.get("pull_request_number"), claims.get("head_sha")
    if isinstance(number, str) and number.isdigit() and isinstance(sha, str):
        if len(sha) >= 12 and all(c in "0123456789abcdef" for c in sha[:12]):
            return f"pr-{number}-{sha[:12]}"
    run, attempt = claims.get("run_id"), claims.get("run_attempt")
    if isinstance(run, str) and run.isdigit() and isinstance(attempt, str) and attempt.isdigit():
        return f"run-{run}-{attempt}"
    return None


class Exchange:
    def __init__(
        self,
        verifier: TokenVerifier,
        trust: TrustStore,
        registry: BuilderRegistry,
        tokens: BuildTokens,
        backend_factory: Callable[[OnStopped], BuilderBackend],
        *,
        service_url: str,
        build_timeout: int,
        run_limits: RunLimits | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.verifier = verifier
        self.trust = trust
        self.registry = registry
        self.tokens = tokens
        self.backend = backend_factory(self.builder_stopped)
        self._service_url = service_url
        self._build_timeout = build_timeout
        self._run_limits = run_limits or RunLimits()
        self._clock = clock
        self._projects: dict[str, str] = {}

    async def exchange(self, form: Mapping[str, str]) -> Granted:
        project: str | None = None
        token: VerifiedToken | None = None
        try:
            request = parse_exchange_request(form)
            project = request.project
            token = await self.verifier.verify(request.subject_token)
            relationships = await self.trust.for_project(project)
            if not relationships:
                raise errors.PROJECT_UNKNOWN.error()
            decision = evaluate(relationships, token.claims)
            if decision.relationship is None:
                raise errors.TRUST_DENIED.error(
                    " | ".join(decision.rules), operator_detail=" | ".join(decision.reasons)
                )
            await self.verifier.claim_jti(token)
            try:
                granted = await self._grant(token, project, decision.relationship)
            except errors.Refused:
                # Nothing was handed out: the run may try again (say, once a builder is free).
                await self.verifier.release_jti(token)
                raise
        except errors.Refused as refused:
            audit.exchange_refused(
                refused.refusal.reason,
                refused.code,
                refused.description,
                project=project,
                token=token,
                why=refused.operator_detail,
            )
            raise
        audit.exchange_granted(
            token, project, decision.relationship.id, decision.reasons[0], granted.builder.id
        )
        return granted

    async def _grant(
        self, token: VerifiedToken, project: str, relationship: TrustRelationship
    ) -> Granted:
        now = int(self._clock())
        builder_id = "b-" + secrets.token_hex(8)
        expires_at = now + relationship.ttl
        full = await self.registry.reserve(
            project,
            Slot(builder_id, expires_at, _run_of(token), _head_repository_of(token)),
            Limits(
                relationship.max_builders,
                self._run_limits.per_run,
                self._run_limits.per_head_repository,
            ),
        )
        if full is not None:
            raise errors.LIMIT_REACHED[full.limit].error(
                f"at most {full.allowed}", retry_after=full.retry_after
            )
        credential = secrets.token_urlsafe(32)
        build_token, digest = await self.tokens.mint(
            BuildTokenInfo(
                builder_id=builder_id,
                project=project,
                issued_at=now,
                expires_at=expires_at,
                sub=token.claim("sub") or "",
                repository=token.claim("repository") or "",
                run_id=token.claim("run_id") or "",
            )
        )
        await self.registry.save(
            BuilderRecord(
                id=builder_id,
                project=project,
                expires_at=expires_at,
                credential_hash=credential_hash(credential),
                token_hash=digest,
                relationship_id=relationship.id,
                issuer=token.issuer,
                jti=token.jti,
                repository=token.claim("repository") or "",
                run_id=token.claim("run_id") or "",
            )
        )
        push_tag = image_tag(token.claims) if relationship.push else None
        if relationship.push and push_tag is None:
            await self.registry.release(builder_id)
            raise errors.PUSH_TAG.error()
        spec = BuilderSpec(
            builder_id,
            project,
            expires_at,
            credential,
            self._service_url,
            self._build_timeout,
            push=relationship.push,
            push_tag=push_tag,
            egress=relationship.egress,
        )
        try:
            builder = await self.backend.start(spec)
        except BackendError:
            await self.registry.release(builder_id)
            raise errors.BACKEND_FAILED.error() from None
        self._projects[builder_id] = project
        audit.builder_started(self.backend.name, builder_id, project, expires_at, token)
        if token.claim("event_name") == "pull_request" and (not builder.ephemeral or builder.cache):
            await self.backend.stop(builder_id)
            await self.registry.release(builder_id)
            raise errors.NOT_EPHEMERAL.error()
        return Granted(build_token, builder, max(0, expires_at - int(self._clock())))

    async def builder_stopped(self, builder_id: str, reason: str) -> None:
        """The backend's report that a builder is gone: forget it (its token stops working,
        its slot frees) and write the audit line."""
        await self.registry.release(builder_id)
        audit.builder_stopped(builder_id, reason, self._projects.pop(builder_id, None))

    async def release(self, builder_id: str) -> bool:
        """A builder's own call when it is deleted (``DELETE {endpoint}``)."""
        return await self.registry.release(builder_id) is not None

    async def close(self) -> None:
        await self.backend.close()


def _run_of(token: VerifiedToken) -> str:
    """The run the token names, whatever its attempt (identity.py made both claims strings)."""
    return f"{token.claim('repository')}#{token.claim('run_id')}"


def _head_repository_of(token: VerifiedToken) -> str:
    """Where the pull request's code comes from: the fork (the repository itself for a
    pull request from a branch, or a token without ``head_repository``)."""
    return token.claim("head_repository") or token.claim("repository") or ""
