"""The builder service's HTTP API (API.md section 2): routes only; each parses, calls one
domain function, and renders."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from issuer.builder import audit, errors
from issuer.builder.admin import require_admin
from issuer.builder.forms import basic_credentials, read_form
from issuer.builder.relationships import (
    PROJECT,
    InvalidRelationship,
    TrustRelationship,
    parse_relationship,
)
from issuer.builder.service import BuilderService
from issuer.store import StoreUnavailable
from issuer.web.errors import ApiError
from issuer.web.http import EXCEPTION_HANDLERS, AccessLog, BodyLimit, on_store_error, read_json
from issuer.web.openapi import openapi_endpoint

ServiceFactory = Callable[[], Awaitable[BuilderService]]
MAX_ADMIN_BODY = 256 * 1024
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _service(request: Request) -> BuilderService:
    service: BuilderService = request.app.state.service
    return service


async def on_refused(request: Request, exc: Exception) -> Response:
    """Every error answer, a documented refusal or not (a body too large, say): RFC 6749
    section 5.2 form, never stored."""
    assert isinstance(exc, ApiError)
    headers = dict(NO_STORE)
    if exc.retry_after is not None:
        headers["Retry-After"] = str(exc.retry_after)
    if exc.code == "invalid_client":
        headers["WWW-Authenticate"] = 'Basic realm="builders"'
    elif exc.code == "invalid_token":
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    body = {"error": exc.code, "error_description": exc.description}
    return JSONResponse(body, status_code=exc.status, headers=headers)


async def on_store_unavailable(request: Request, exc: Exception) -> Response:
    response = await on_store_error(request, exc)
    response.headers.update(NO_STORE)
    return response


async def token(request: Request) -> Response:
    """RFC 8693 token exchange."""
    try:
        form = await read_form(request)
    except errors.Refused as refused:
        audit.exchange_refused(refused.refusal.reason, refused.code, refused.description)
        raise
    granted = await _service(request).exchange.exchange(form)
    return JSONResponse(granted.as_json(), headers=NO_STORE)


async def _builder_client(request: Request) -> str:
    """The id of the builder calling, authenticated by its credential (Basic)."""
    credentials = basic_credentials(request)
    if credentials is None:
        raise errors.BUILDER_CLIENT.error()
    builder_id, secret = credentials
    record = await _service(request).registry.authenticate(builder_id, secret)
    if record is None:
        raise errors.BUILDER_CLIENT.error()
    return builder_id


async def introspect(request: Request) -> Response:
    """RFC 7662: active only for a live build token bound to the builder asking."""
    builder_id = await _builder_client(request)
    form = await read_form(request)
    presented = form.get("token")
    if not presented:
        raise errors.PARAMETER_MISSING.error("token")
    info = await _service(request).tokens.lookup(presented)
    if info is None or info.builder_id != builder_id:
        return JSONResponse({"active": False}, headers=NO_STORE)
    config = _service(request).config
    body = {
        "active": True,
        "token_type": "Bearer",
        "client_id": builder_id,
        "iss": config.url,
        "aud": builder_id,
        "sub": info.sub,
        "iat": info.issued_at,
        "exp": info.expires_at,
        "builder_id": info.builder_id,
        "project": info.project,
        "repository": info.repository,
        "run_id": info.run_id,
    }
    return JSONResponse(body, headers=NO_STORE)


async def release(request: Request) -> Response:
    """A builder's own call once it was deleted: its token stops working at once."""
    builder_id = await _builder_client(request)
    if builder_id != request.path_params["builder_id"]:
        raise errors.BUILDER_CLIENT.error()
    released = await _service(request).exchange.release(builder_id)
    return JSONResponse({"released": released}, headers=NO_STORE)


def _admin(request: Request) -> BuilderService:
    service = _service(request)
    require_admin(request, service.config.admin_token)
    return service


def _project_param(request: Request) -> str:
    project = request.query_params.get("project", "")
    if not project:
        raise errors.PARAMETER_MISSING.error("project")
    if not PROJECT.fullmatch(project):
        raise errors.PROJECT_MALFORMED.error()
    return project


def _parse(service: BuilderService, raw: Any, where: str = "") -> TrustRelationship:
    try:
        return parse_relationship(raw, trusted_issuers=service.config.trusted_issuers)
    except InvalidRelationship as error:
        raise errors.RELATIONSHIP_INVALID.error(f"{where}{error}") from None


async def trust_add(request: Request) -> Response:
    service = _admin(request)
    relationship = _parse(service, await read_json(request))
    await service.trust.add([relationship])
    return JSONResponse(relationship.as_json(), status_code=201, headers=NO_STORE)


async def trust_import(request: Request) -> Response:
    """Several relationships at once, all or none: the YAML import."""
    service = _admin(request)
    body = await read_json(request, limit=MAX_ADMIN_BODY)
    items = body.get("relationships") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise errors.RELATIONSHIP_INVALID.error('send {"relationships": [...]}, not empty')
    relationships = [
        _parse(service, item, f"document {number}: ") for number, item in enumerate(items, 1)
    ]
    await service.trust.add(relationships)
    answer = {"relationships": [r.as_json() for r in relationships]}
    return JSONResponse(answer, status_code=201, headers=NO_STORE)


async def trust_list(request: Request) -> Response:
    service = _admin(request)
    relationships = await service.trust.for_project(_project_param(request))
    return JSONResponse({"relationships": [r.as_json() for r in relationships]}, headers=NO_STORE)


async def trust_remove(request: Request) -> Response:
    service = _admin(request)
    relationship_id = request.path_params["relationship_id"]
    if not await service.trust.remove(_project_param(request), relationship_id):
        raise errors.RELATIONSHIP_UNKNOWN.error()
    return JSONResponse({"removed": relationship_id}, headers=NO_STORE)


async def healthz(request: Request) -> Response:
    return JSONResponse({"status": "ok"})


async def readyz(request: Request) -> Response:
    store_ok = await _service(request).store.ping()
    body = {"status": "ok" if store_ok else "unavailable", "store": store_ok}
    return JSONResponse(body, status_code=200 if store_ok else 503)


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
        Route("/token", token, methods=["POST"]),
        Route("/introspect", introspect, methods=["POST"]),
        Route("/builders/{builder_id}/release", release, methods=["POST"]),
        Route("/admin/trust", trust_add, methods=["POST"]),
        Route("/admin/trust", trust_list, methods=["GET"]),
        Route("/admin/trust/import", trust_import, methods=["POST"]),
        Route("/admin/trust/{relationship_id}", trust_remove, methods=["DELETE"]),
        Route("/healthz", healthz, methods=["GET"]),
        Route("/readyz", readyz, methods=["GET"]),
        Route("/openapi.json", openapi_endpoint("builder"), methods=["GET"]),
    ]
    handlers = {
        **EXCEPTION_HANDLERS,
        ApiError: on_refused,
        StoreUnavailable: on_store_unavailable,
    }
    return Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers=handlers,
        middleware=[Middleware(AccessLog), Middleware(BodyLimit, limit=MAX_ADMIN_BODY)],
    )
