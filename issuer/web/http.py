"""HTTP plumbing shared by the services: JSON errors, bounded requests, request ids,
redacted request logs, request metrics, and a server that drains long polls on exit."""

from __future__ import annotations

import asyncio
import contextvars
import json
import logging
import re
import socket
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from types import FrameType
from typing import Any

import uvicorn
from starlette.datastructures import MutableHeaders
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from issuer.store import StoreUnavailable
from issuer.web.errors import ApiError
from issuer.web.logs import REQUEST_ID, request_id_from
from issuer.web.metrics import HTTP_IN_PROGRESS, HTTP_LATENCY, HTTP_REQUESTS

MAX_BODY = 16 * 1024
MAX_TARGET = 2048
"""Bytes of path plus query string: no route of ours needs more."""
MAX_HEADER_BYTES = 8 * 1024
MAX_HEADER_COUNT = 64
MAX_HEAD = 16 * 1024
"""What uvicorn (h11) buffers of a request line and headers before refusing the request."""
log = logging.getLogger("issuer.access")

# Path segments that are capabilities: never written to a log line.
_SECRET_PATH = re.compile(r"^(/exchange/)[^/]+")


def redact_path(path: str) -> str:
    return _SECRET_PATH.sub(r"\1{claim_id}", path)


def error_response(error: ApiError) -> JSONResponse:
    headers = dict(error.headers)
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
    except RecursionError:  # [[[[...]]]] within the size limit: the caller's mistake, not ours
        raise ApiError(400, "invalid_request", "the body's JSON is nested too deeply") from None


async def on_api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "invalid_request")
    response = error_response(ApiError(exc.status_code, code, str(exc.detail)))
    if exc.headers and "Allow" in exc.headers:  # a 405 says which methods the route has
        response.headers["Allow"] = exc.headers["Allow"]
    return response


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


def _too_large(status: int, what: str) -> ApiError:
    return ApiError(status, "request_too_large", what)


class BodyLimit:
    """Bounds every request before a handler runs: 414 for a path and query string over
    ``MAX_TARGET`` bytes, 431 for headers over ``MAX_HEADER_BYTES`` (or ``MAX_HEADER_COUNT``
    of them), 413 for a body that declares, or turns out while read, over ``limit`` bytes."""

    def __init__(
        self, app: ASGIApp, limit: int = MAX_BODY, larger: Mapping[str, int] | None = None
    ) -> None:
        """``larger``: paths allowed a larger body (GitHub's webhook deliveries)."""
        self.app = app
        self.limit = limit
        self.larger = dict(larger or {})

    def _limit(self, scope: Scope) -> int:
        return self.larger.get(scope["path"], self.limit)

    def _refusal(self, scope: Scope) -> ApiError | None:
        target = len(scope.get("raw_path") or scope["path"].encode()) + len(
            scope.get("query_string", b"")
        )
        if target > MAX_TARGET:
            return _too_large(414, f"the path and query must be at most {MAX_TARGET} bytes")
        headers = scope["headers"]
        size = sum(len(name) + len(value) for name, value in headers)
        if size > MAX_HEADER_BYTES or len(headers) > MAX_HEADER_COUNT:
            return _too_large(
                431,
                f"the headers must be at most {MAX_HEADER_BYTES} bytes, {MAX_HEADER_COUNT} of them",
            )
        limit = self._limit(scope)
        for name, value in headers:
            if name == b"content-length" and value.isdigit() and int(value) > limit:
                return _too_large(413, f"the body must be at most {limit} bytes")
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is not None:
            await error_response(refusal)(scope, receive, send)
            return
        received = 0
        limit = self._limit(scope)

        async def bounded_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise _too_large(413, f"the body must be at most {limit} bytes")
            return message

        await self.app(scope, bounded_receive, send)


class RequestId:
    """Gives each request an id (the caller's ``X-Request-Id`` if it is short and plain),
    returns it in the ``X-Request-Id`` header, and sets it for every log line meanwhile."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        given = next((v for k, v in scope["headers"] if k == b"x-request-id"), None)
        request_id = request_id_from(given.decode("latin-1") if given is not None else None)
        token = REQUEST_ID.set(request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                MutableHeaders(scope=message)["X-Request-Id"] = request_id
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            REQUEST_ID.reset(token)


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
            path = redact_path(scope["path"])[:256]
            duration_ms = round((time.perf_counter() - started) * 1000, 1)
            log.info(
                "%s %s %d %.1fms",
                scope["method"],
                path,
                status,
                duration_ms,
                extra={
                    "method": scope["method"][:16],
                    "path": path,
                    "status": status,
                    "duration_ms": duration_ms,
                },
            )


_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


def route_template(routes: Sequence[BaseRoute], scope: Scope) -> str:
    """The template of the route ``scope`` is for (``/admin/trust/{relationship_id}``), never
    the raw path: a label must not hold a capability, nor take unbounded values."""
    for route in routes:
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            path: str = getattr(route, "path", "other")
            return path
    return "unmatched"


class RequestMetrics:
    """Latency, count and in-progress gauges of requests by route template and method."""

    def __init__(self, app: ASGIApp, routes: Sequence[BaseRoute]) -> None:
        self.app = app
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = route_template(self.routes, scope)
        method = scope["method"] if scope["method"] in _METHODS else "other"
        started = time.perf_counter()
        status = 500

        async def send_and_note(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        in_progress = HTTP_IN_PROGRESS.labels(route, method)
        in_progress.inc()
        try:
            await self.app(scope, receive, send_and_note)
        finally:
            in_progress.dec()
            HTTP_LATENCY.labels(route, method).observe(time.perf_counter() - started)
            HTTP_REQUESTS.labels(route, method, str(status)).inc()


KEEP_ALIVE_SECONDS = 65


def server_config(
    app: ASGIApp, *, host: str = "127.0.0.1", port: int = 8000, graceful_timeout: int = 35
) -> uvicorn.Config:
    """How the services run under uvicorn in production."""
    return uvicorn.Config(
        app,
        host=host,
        port=port,
        # uvicorn's access log would print exchange URLs, which are capabilities: ours redacts.
        access_log=False,
        log_config=None,  # keep the process's own (JSON) logging
        log_level="info",
        # The app decides whom to believe about the client (ISSUER_TRUSTED_PROXIES): uvicorn
        # must not rewrite the peer address from X-Forwarded-For on its own.
        proxy_headers=False,
        server_header=False,
        # h11, not httptools: it bounds the request line and headers (MAX_HEAD).
        http="h11",
        h11_max_incomplete_event_size=MAX_HEAD,
        # Long polls answer at once on exit (DrainingServer); this bounds anything else.
        timeout_graceful_shutdown=graceful_timeout,
        # Longer than clients keep idle connections (httpx: 5 s, uvicorn's own default): a
        # server closing an idle connection as the client reuses it loses the request's
        # answer, and an exchange's answer is its one token.
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
    )


class DrainingServer(uvicorn.Server):
    """A uvicorn server that, when a signal tells it to exit, first calls ``on_exit`` in its
    event loop, before it stops accepting and waits for open requests.

    uvicorn runs the app's lifespan shutdown only after every connection closed, which is
    too late for long polls: ``on_exit`` is where they are told to answer now."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], Awaitable[None]]) -> None:
        super().__init__(config)
        self._on_exit = on_exit
        self._loop: asyncio.AbstractEventLoop | None = None
        self._draining: asyncio.Task[None] | None = None

    async def serve(self, sockets: list[socket.socket] | None = None) -> None:
        self._loop = asyncio.get_running_loop()
        await super().serve(sockets)

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        # A signal handler interrupts the loop anywhere: schedule, do not call, on_exit.
        if self._loop is not None:
            # In a fresh context: the signal may have interrupted a request, whose request
            # id would otherwise be stamped on every shutdown log line.
            self._loop.call_soon_threadsafe(self._drain, context=contextvars.Context())
        super().handle_exit(sig, frame)

    def _drain(self) -> None:
        if self._draining is None:
            log.info("shutting down: answering open long polls")
            self._draining = asyncio.get_running_loop().create_task(self._run_hook())

    async def _run_hook(self) -> None:
        try:
            await self._on_exit()
        except Exception:  # never let a failed hook stand in the way of the exit itself
            log.exception("the shutdown hook failed")
