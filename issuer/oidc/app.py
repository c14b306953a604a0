"""The issuer's HTTP API (API.md section 1): routes only; each parses, calls one domain
function, and renders."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import asdict
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from issuer.oidc.abuse import AbuseConfig, AbuseControls
from issuer.oidc.claims import (
    TOKEN_TYPE,
    Issued,
    claim_id_of,
    parse_claim_request,
    parse_relay_path,
)
from issuer.oidc.discovery import Prepared
from issuer.oidc.idempotency import parse_key
from issuer.oidc.metrics import CLAIMS, EXCHANGES, WEBHOOK_DELIVERIES
from issuer.oidc.relay import Relayed, SlotKey
from issuer.oidc.service import IssuerService
from issuer.oidc.webhooks import MAX_DELIVERY_BYTES
from issuer.web.errors import ApiError, invalid_request
from issuer.web.http import (
    EXCEPTION_HANDLERS,
    AccessLog,
    BodyLimit,
    RequestId,
    RequestMetrics,
    read_json,
)
from issuer.web.openapi import openapi_endpoint

ServiceFactory = Callable[[], Awaitable[IssuerService]]


def _service(request: Request) -> IssuerService:
    service: IssuerService = request.app.state.service
    return service


def _abuse(request: Request) -> AbuseControls:
    abuse: AbuseControls = request.app.state.abuse
    return abuse


def _client_address(request: Request) -> str:
    """The caller's address as the abuse controls count it (proxies believed as configured)."""
    return _abuse(request).client_address(
        request.client.host if request.client else None,
        request.headers.getlist("x-forwarded-for"),
    )


def _pending(description: str, retry_after: int) -> Response:
    """202: not yet, ask again after ``retry_after`` seconds."""
    body = {"status": "pending", "error_description": description, "retry_after": retry_after}
    headers = {"Cache-Control": "no-store", "Retry-After": str(retry_after)}
    return JSONResponse(body, status_code=202, headers=headers)


async def claim(request: Request) -> Response:
    service = _service(request)
    abuse = _abuse(request)
    try:
        key = parse_key(request.headers.get("idempotency-key"))
        claim_request = parse_claim_request(await read_json(request), service.config)
    except ApiError:
        CLAIMS.labels("invalid").inc()
        raise

    async def make() -> dict[str, Any]:
        try:
            await abuse.check_claim(_client_address(request), claim_request)
        except ApiError:
            CLAIMS.labels("refused").inc()
            if claim_request.relay is not None and claim_request.run_attempt is not None:
                slot = SlotKey(
                    claim_request.repository,
                    claim_request.run_id,
                    claim_request.run_attempt,
                    claim_request.relay,
                )
                await service.claims.relay.refused(slot)  # a refused claim contests its slot
            raise
        return await service.claims.create(claim_request, _client_address(request))

    if key is None:
        created = await make()
    else:  # a retry with the key gets the claim its first request made
        created = await service.claims.idempotent.answer(
            key,
            asdict(claim_request),
            make,
            kept_for=lambda made: max(made["expires_at"] - time.time(), 1.0),
        )
    return JSONResponse(created, status_code=201, headers={"Cache-Control": "no-store"})


def _wait_seconds(request: Request) -> float:
    raw = request.query_params.get("wait", "0")
    try:
        wait = float(raw)
    except ValueError:
        raise invalid_request("wait must be a number of seconds") from None
    if not 0 <= wait < float("inf"):
        raise invalid_request("wait must be a number of seconds")
    return wait


async def exchange(request: Request) -> Response:
    service = _service(request)
    try:
        claim_id = claim_id_of(request.headers.get("authorization"))
        wait = _wait_seconds(request)
        outcome = await service.claims.exchange(claim_id, wait)
    except ApiError as error:
        EXCHANGES.labels(error.code).inc()
        raise
    headers = {"Cache-Control": "no-store"}
    if isinstance(outcome, Issued):
        EXCHANGES.labels("issued_again" if outcome.again else "issued").inc()
        body = {"token": outcome.token, "token_type": TOKEN_TYPE, "expires_in": outcome.expires_in}
        return JSONResponse(body, headers=headers)
    EXCHANGES.labels("pending").inc()
    return _pending(outcome.description, outcome.retry_after)


async def relay(request: Request) -> Response:
    """The challenge line of a relay slot's one claim, for the job that prints it (public: a
    code is useful only to whoever can make the run print it). Asks GitHub nothing."""
    service = _service(request)
    slot = parse_relay_path(request.path_params)
    wait = _wait_seconds(request)
    await service.claims.relay.check_rate(_client_address(request))
    outcome = await service.claims.relay.relay(slot, wait)
    headers = {"Cache-Control": "no-store"}
    if isinstance(outcome, Relayed):
        body = {
            "challenge_line": outcome.challenge_line,
            "challenge_code": outcome.code,
            "expires_at": outcome.expires_at,
        }
        return JSONResponse(body, headers=headers)
    return _pending(outcome.description, outcome.retry_after)


async def github_webhook(request: Request) -> Response:
    """GitHub's deliveries: 202 once taken (or already taken), 401 for a bad signature."""
    receiver = _service(request).webhooks
    if receiver is None:
        raise ApiError(404, "not_found", "webhooks are not configured on this issuer")
    body = await request.body()
    try:
        outcome = await receiver.receive(request.headers, body)
    except ApiError as error:
        WEBHOOK_DELIVERIES.labels(error.code).inc()
        raise
    WEBHOOK_DELIVERIES.labels(outcome).inc()
    return JSONResponse({"status": outcome}, status_code=202, headers={"Cache-Control": "no-store"})


class _PreparedResponse(Response):
    """A response whose body and encoded headers were prepared when the keyring changed."""

    def __init__(self, document: Prepared, *, not_modified: bool) -> None:
        self.background = None
        if not_modified:
            self.status_code, self.body = 304, b""
            self.raw_headers = list(document.raw_headers_304)
        else:
            self.status_code, self.body = 200, document.body
            self.raw_headers = list(document.raw_headers)


def _prepared(request: Request, document: Prepared) -> Response:
    # The raw scope headers, not request.headers: this route answers verifiers at volume.
    if_none_match = next((v for k, v in request.scope["headers"] if k == b"if-none-match"), None)
    not_modified = if_none_match is not None and document.not_modified(if_none_match.decode())
    return _PreparedResponse(document, not_modified=not_modified)


async def openid_configuration(request: Request) -> Response:
    return _prepared(request, _service(request).published.discovery)


async def jwks(request: Request) -> Response:
    return _prepared(request, _service(request).published.jwks)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


def _keyring_usable(service: IssuerService) -> bool:
    """True if a key can sign now (the keyring holds an active key, unwrapped)."""
    try:
        service.keys.signing_key()
    except (LookupError, AssertionError):
        return False
    return True


async def readiness(service: IssuerService) -> dict[str, bool]:
    """Each part this replica needs to answer claims and exchanges: True if it is usable."""
    checks = {
        "store": await service.store.ping(),
        "keyring": _keyring_usable(service),
    }
    return checks


async def github_usable(service: IssuerService) -> bool:
    """Whether a GitHub credential could be used now. Reported, but not a reason to leave
    the load balancer: every replica shares the budget, and claims, discovery and JWKS need
    no GitHub request."""
    try:
        return await service.github.has_usable_credential()
    except Exception:  # the store is down: readiness says so already
        return False


async def readyz(request: Request) -> Response:
    if request.app.state.shutting_down:
        body: dict[str, object] = {"status": "shutting_down"}
        return JSONResponse(body, status_code=503, headers={"Cache-Control": "no-store"})
    service = _service(request)
    checks = await readiness(service)
    failing = [name for name, ok in checks.items() if not ok]
    github = await github_usable(service)
    body = {"status": "unavailable" if failing else "ok", **checks, "github": github}
    if failing:
        body["failing"] = failing
    if not github:
        body["degraded"] = ["github"]  # every credential rests: exchanges answer 503 for now
    return JSONResponse(
        body, status_code=503 if failing else 200, headers={"Cache-Control": "no-store"}
    )


async def begin_shutdown(app: Starlette) -> None:
    """The process is about to exit: readiness turns false and open long polls answer now.

    Called by :class:`issuer.web.http.DrainingServer` as soon as the exit signal arrives, before
    connections are drained (the lifespan shutdown comes only after they closed)."""
    app.state.shutting_down = True
    service: IssuerService | None = getattr(app.state, "service", None)  # None before start
    if service is not None:
        await service.claims.begin_shutdown()


def create_app(start_service: ServiceFactory, *, abuse: AbuseConfig | None = None) -> Starlette:
    """The ASGI app; ``start_service`` builds the replica's domain objects at startup.
    ``abuse`` sets the claim limits (the defaults of :class:`AbuseConfig` if None)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service = await start_service()
        app.state.service = service
        app.state.abuse = AbuseControls(
            abuse or AbuseConfig(), service.store, service.config.claim_ttl
        )
        try:
            yield
        finally:
            await service.close()

    routes = [
        Route("/claim", claim, methods=["POST"]),
        Route("/exchange", exchange, methods=["POST"]),
        Route(
            "/relay/{owner}/{repo}/runs/{run_id}/attempts/{attempt}/{slot}",
            relay,
            methods=["GET"],
        ),
        Route("/github/webhook", github_webhook, methods=["POST"]),
        Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/.well-known/jwks", jwks, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint("issuer"), methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[
            Middleware(RequestId),
            Middleware(AccessLog),
            Middleware(RequestMetrics, routes=routes),
            Middleware(BodyLimit, larger={"/github/webhook": MAX_DELIVERY_BYTES}),
        ],
    )
    app.state.shutting_down = False
    return app
