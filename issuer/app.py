"""The issuer's HTTP API (API.md section 1): routes only; each parses, calls one domain
function, and renders."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable

import prometheus_client
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from issuer.claims import TOKEN_TYPE, Issued, parse_claim_request
from issuer.discovery import Prepared
from issuer.errors import ApiError, invalid_request
from issuer.http import EXCEPTION_HANDLERS, AccessLog, BodyLimit, read_json
from issuer.metrics import EXCHANGES
from issuer.service import IssuerService

ServiceFactory = Callable[[], Awaitable[IssuerService]]


def _service(request: Request) -> IssuerService:
    service: IssuerService = request.app.state.service
    return service


async def claim(request: Request) -> Response:
    service = _service(request)
    body = await read_json(request)
    claim_request = parse_claim_request(body, service.config)
    created = await service.claims.create(claim_request)
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
    wait = _wait_seconds(request)
    try:
        outcome = await service.claims.exchange(request.path_params["claim_id"], wait)
    except ApiError as error:
        EXCHANGES.labels(error.code).inc()
        raise
    headers = {"Cache-Control": "no-store"}
    if isinstance(outcome, Issued):
        EXCHANGES.labels("issued").inc()
        body = {"token": outcome.token, "token_type": TOKEN_TYPE, "expires_in": outcome.expires_in}
        return JSONResponse(body, headers=headers)
    EXCHANGES.labels("pending").inc()
    headers["Retry-After"] = str(outcome.retry_after)
    pending = {
        "status": "pending",
        "error_description": outcome.description,
        "retry_after": outcome.retry_after,
    }
    return JSONResponse(pending, status_code=202, headers=headers)


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


async def readyz(request: Request) -> Response:
    service = _service(request)
    store_ok = await service.store.ping()
    body = {"status": "ok" if store_ok else "unavailable", "store": store_ok, "keyring": True}
    return JSONResponse(body, status_code=200 if store_ok else 503)


async def metrics(request: Request) -> Response:
    return Response(
        prometheus_client.generate_latest(), media_type=prometheus_client.CONTENT_TYPE_LATEST
    )


def create_app(start_service: ServiceFactory) -> Starlette:
    """The ASGI app; ``start_service`` builds the replica's domain objects at startup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        service = await start_service()
        app.state.service = service
        try:
            yield
        finally:
            await service.close()

    routes = [
        Route("/claim", claim, methods=["POST"]),
        Route("/exchange/{claim_id}", exchange, methods=["POST"]),
        Route("/.well-known/openid-configuration", openid_configuration, methods=["GET"]),
        Route("/.well-known/jwks", jwks, methods=["GET"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/metrics", metrics, methods=["GET"]),
    ]
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=EXCEPTION_HANDLERS,
        middleware=[Middleware(AccessLog), Middleware(BodyLimit)],
    )
