"""HTTP plumbing shared by the services: JSON errors, bounded bodies, redacted request logs."""

from __future__ import annotations

import json
import logging
import re
import time
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from issuer.errors import ApiError
from issuer.store import StoreUnavailable

MAX_BODY = 16 * 1024
log = logging.getLogger("issuer.access")

# Path segments that are capabilities: never written to a log line.
_SECRET_PATH = re.compile(r"^(/exchange/)[^/]+")


def redact_path(path: str) -> str:
    return _SECRET_PATH.sub(r"\1{claim_id}", path)


def error_response(error: ApiError) -> JSONResponse:
    headers = {}
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    return JSONResponse(
        {"error": error.code, "error_description": error.description},
        status_code=error.status,
        headers=headers,
    )


async def read_json(request: Request, limit: int = MAX_BODY) -> Any:
    """The request's JSON body, refusing more than ``limit`` bytes as they arrive (a declared
    length over the limit is refused earlier, by :class:`BodyLimit`)."""
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise ApiError(413, "request_too_large", f"the body must be at most {limit} bytes")
    if not body:
        raise ApiError(400, "invalid_request", "the body must be a JSON object")
    try:
        return json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ApiError(400, "invalid_request", "the body is not valid JSON") from None


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
    return error_response(ApiError(exc.status_code, code, str(exc.detail)))


async def on_store_error(request: Request, exc: Exception) -> Response:
    log.error("store unavailable: %s", exc)
    return error_response(
        ApiError(503, "temporarily_unavailable", "shared state is unreachable", retry_after=5)
    )


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.error("unexpected %s at %s", type(exc).__name__, redact_path(request.url.path))
    return error_response(ApiError(500, "server_error", "the server failed; try again"))


EXCEPTION_HANDLERS = {
    ApiError: on_api_error,
    HTTPException: on_http_error,
    StoreUnavailable: on_store_error,
    Exception: on_unexpected,
}


class BodyLimit:
    """413 for any request that declares a body over the limit, before a handler runs."""

    def __init__(self, app: ASGIApp, limit: int = MAX_BODY) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            for name, value in scope["headers"]:
                if name == b"content-length" and value.isdigit() and int(value) > self.limit:
                    error = ApiError(
                        413, "request_too_large", f"the body must be at most {self.limit} bytes"
                    )
                    await error_response(error)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


class AccessLog:
    """One log line per request, with capability path segments redacted."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        finally:
            log.info(
                "%s %s %d %.1fms",
                scope["method"],
                redact_path(scope["path"]),
                status,
                (time.perf_counter() - started) * 1000,
            )
