"""GitHub's front door, the same for every API endpoint.

In order: the secondary limit's cap on requests in flight (held until the answer, latency
included), latency, the User-Agent rule, the API version, injected faults, the secondary
limit's points, authentication, the primary rate limit, the endpoint itself, then conditional
requests (a matching `If-None-Match` gets 304 and costs nothing against the primary limit) and
the headers every answer carries.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Literal

from starlette.requests import Request
from starlette.responses import Response

from issuer.sim.credentials import AppAuthError, Credential, SimApp
from issuer.sim.faults import Fault
from issuer.sim.payloads import Urls
from issuer.sim.ratelimit import Quota
from issuer.sim.secondary import points_of
from issuer.sim.simulator import GitHubSim

API_VERSION = "2022-11-28"
DOCS = "https://docs.github.com/rest"
RATE_LIMIT_DOCS = "https://docs.github.com/rest/overview/rate-limits-for-the-rest-api"
SECONDARY_DOCS = (
    "https://docs.github.com/free-pro-team@latest/rest/overview/"
    "rate-limits-for-the-rest-api#about-secondary-rate-limits"
)
USER_AGENT_REQUIRED = (
    "Request forbidden by administrative rules. Please make sure your request has a User-Agent "
    "header (https://docs.github.com/en/rest/overview/resources-in-the-rest-api#user-agent-required)."
    " Check https://developer.github.com for other possible causes.\n"
)
_APP_JWT_LIMIT = 5000
ALL_METHODS = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


@dataclass(frozen=True)
class Caller:
    """Who is asking, and which rate-limit bucket pays."""

    bucket: str
    limit: int
    subject: str  # completes "API rate limit exceeded for ..."
    credential: Credential | None = None
    app: SimApp | None = None


@dataclass
class ApiReply:
    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    counts: bool = True  # False: answered without charging the caller (GET /rate_limit)


@dataclass(frozen=True)
class ApiContext:
    sim: GitHubSim
    request: Request
    caller: Caller
    urls: Urls

    @property
    def origin(self) -> str:
        """scheme://host:port of this request, as the client addressed it."""
        return str(self.request.base_url).rstrip("/")


class NotFound(Exception):
    """The endpoint's answer is GitHub's 404 (also for what the caller may not see)."""


class ApiError(Exception):
    def __init__(self, status: int, message: str, documentation_url: str = DOCS) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.documentation_url = documentation_url


Handler = Callable[[ApiContext], ApiReply]
Endpoint = Callable[[Request], Awaitable[Response]]
AuthMode = Literal["token", "app_jwt"]


def error_body(status: int, message: str, documentation_url: str = DOCS) -> dict[str, str]:
    return {"message": message, "documentation_url": documentation_url, "status": str(status)}


def _request_id() -> str:
    parts = [secrets.token_hex(2), secrets.token_hex(3), secrets.token_hex(3), secrets.token_hex(3)]
    return ":".join(p.upper() for p in [*parts, secrets.token_hex(4)])


def _etag(body: bytes) -> str:
    return f'W/"{hashlib.sha256(body).hexdigest()}"'


def _matches(if_none_match: str | None, etag: str) -> bool:
    if not if_none_match:
        return False
    opaque = etag.removeprefix("W/")
    for candidate in if_none_match.split(","):
        candidate = candidate.strip()
        if candidate == "*" or candidate.removeprefix("W/") == opaque:
            return True
    return False


def _anonymous(sim: GitHubSim, request: Request) -> Caller:
    host = request.client.host if request.client else "127.0.0.1"
    return Caller(
        bucket="anonymous",
        limit=sim.settings.unauthenticated_limit,
        subject=(
            f"{host}. (But here's the good news: Authenticated requests get a higher rate limit."
            " Check out the documentation for more details.)"
        ),
    )


def _bearer(request: Request) -> str | None:
    """The credential in `Authorization: Bearer T` or `token T`; "" when malformed."""
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() not in ("bearer", "token") or not value.strip():
        return ""
    return value.strip()


class _Refused(Exception):
    def __init__(self, status: int, message: str) -> None:
        self.status = status
        self.message = message


def _authenticate(sim: GitHubSim, request: Request, mode: AuthMode) -> Caller:
    token = _bearer(request)
    if mode == "app_jwt":
        if not token:
            raise _Refused(401, "A JSON web token could not be decoded")
        try:
            app = sim.credentials.verify_app_jwt(token, sim.clock())
        except AppAuthError as exc:
            raise _Refused(401, str(exc)) from exc
        return Caller(f"app:{app.app_id}", _APP_JWT_LIMIT, f"app ID {app.app_id}", app=app)
    if token is None:
        if sim.settings.require_auth:
            raise _Refused(401, "Requires authentication")
        return _anonymous(sim, request)
    credential = sim.credentials.lookup(token, sim.clock()) if token else None
    if credential is None:
        raise _Refused(401, "Bad credentials")
    return Caller(credential.bucket, credential.limit, credential.limit_subject, credential)


def _json(reply: ApiReply) -> bytes:
    return json.dumps(reply.body, separators=(",", ":")).encode()


def api_endpoint(
    sim: GitHubSim,
    handler: Handler,
    *,
    method: str = "GET",
    auth: AuthMode = "token",
    docs: str = DOCS,
) -> Endpoint:
    """Wrap `handler` in the front door. Other methods on its path get GitHub's 404: route it
    with `methods=ALL_METHODS` so that they reach it. `method="*"` accepts every method."""
    return _FrontDoor(sim, handler, method, auth, docs).handle


@dataclass(frozen=True)
class _FrontDoor:
    sim: GitHubSim
    handler: Handler
    method: str
    auth: AuthMode
    docs: str

    async def handle(self, request: Request) -> Response:
        sim = self.sim
        base = _base_headers(sim)
        with sim.lock:
            payer = _payer(sim, request, self.auth)
            if not sim.secondary.enter(payer.bucket, sim.settings.secondary_concurrency):
                return _secondary_limited(sim, payer, base, _retry_after(sim, 1))
        try:
            return await self._handle(request, payer, base)
        finally:
            with sim.lock:
                sim.secondary.leave(payer.bucket)

    async def _handle(self, request: Request, payer: Caller, base: dict[str, str]) -> Response:
        if self.sim.settings.latency > 0:
            await asyncio.sleep(self.sim.settings.latency)
        if not request.headers.get("user-agent", "").strip():
            return Response(USER_AGENT_REQUIRED, 403, base, media_type="text/plain; charset=utf-8")
        version = request.headers.get("x-github-api-version")
        if version is not None and version != API_VERSION:
            body = error_body(400, f"API version '{version}' is not supported.")
            return _send(ApiReply(400, body), base, None)
        with self.sim.lock:
            fault = self.sim.faults.pop()
            if fault is not None:
                return _fault(self.sim, request, fault, base)
            settings = self.sim.settings
            wait = self.sim.secondary.charge(
                payer.bucket, points_of(request.method), settings.secondary_points_per_minute
            )
            if wait is not None:
                return _secondary_limited(self.sim, payer, base, _retry_after(self.sim, wait))
            admitted = self._admit(request, base)
            if isinstance(admitted, Response):
                return admitted
            return self._answer(request, admitted, base)

    def _admit(self, request: Request, base: dict[str, str]) -> Caller | Response:
        """The caller, or the 401/403/429 that turns it away."""
        limiter = self.sim.rate_limiter
        try:
            caller = _authenticate(self.sim, request, self.auth)
        except _Refused as refused:
            anonymous = _anonymous(self.sim, request)
            quota = limiter.count(anonymous.bucket, anonymous.limit)
            body = error_body(refused.status, refused.message)
            return _send(ApiReply(refused.status, body), base, quota)
        quota = limiter.quota(caller.bucket, caller.limit)
        if quota.remaining > 0:
            return caller
        status = self.sim.settings.rate_limit_status
        message = f"API rate limit exceeded for {caller.subject}"
        if caller.credential is not None or caller.app is not None:
            message += (
                ". If you reach out to GitHub Support for help, please include the "
                f"request ID {base['x-github-request-id']}."
            )
        return _send(ApiReply(status, error_body(status, message, RATE_LIMIT_DOCS)), base, quota)

    def _answer(self, request: Request, caller: Caller, base: dict[str, str]) -> Response:
        limiter = self.sim.rate_limiter
        reply = self._dispatch(ApiContext(self.sim, request, caller, urls_for(self.sim, request)))
        if reply.status == 200 and request.method in ("GET", "HEAD") and reply.body is not None:
            etag = _etag(_json(reply))
            reply.headers["etag"] = etag
            visibility = "public" if caller.credential is None else "private"
            reply.headers["cache-control"] = f"{visibility}, max-age=60, s-maxage=60"
            if _matches(request.headers.get("if-none-match"), etag):
                quota = limiter.quota(caller.bucket, caller.limit)
                return _send(ApiReply(304, None, reply.headers), base, quota)
        if reply.counts:
            quota = limiter.count(caller.bucket, caller.limit)
        else:
            quota = limiter.quota(caller.bucket, caller.limit)
        return _send(reply, base, quota)

    def _dispatch(self, ctx: ApiContext) -> ApiReply:
        allowed = {self.method, "HEAD"} if self.method == "GET" else {self.method}
        try:
            if self.method != "*" and ctx.request.method not in allowed:
                raise NotFound
            return self.handler(ctx)
        except NotFound:
            return ApiReply(404, error_body(404, "Not Found", self.docs))
        except ApiError as exc:
            return ApiReply(exc.status, error_body(exc.status, exc.message, exc.documentation_url))


def _base_headers(sim: GitHubSim) -> dict[str, str]:
    headers = {
        "x-github-api-version-selected": API_VERSION,
        "x-github-media-type": "github.v3; format=json",
        "x-github-request-id": _request_id(),
        "vary": "Accept, Authorization, Cookie, X-GitHub-OTP",
    }
    if sim.api_prefix:
        headers["x-github-enterprise-version"] = "3.17.0"
    return headers


def urls_for(sim: GitHubSim, request: Request) -> Urls:
    origin = str(request.base_url).rstrip("/")
    # github.com serves its web UI from another host than api.github.com; GHES from the same one.
    web = origin if sim.api_prefix else "https://github.com"
    return Urls(api=origin + sim.api_prefix, web=web)


def _payer(sim: GitHubSim, request: Request, mode: AuthMode) -> Caller:
    """Whose secondary-limit bucket a request counts against: its credential's, or the
    anonymous caller's when it has none that works."""
    try:
        return _authenticate(sim, request, mode)
    except _Refused:
        return _anonymous(sim, request)


def _retry_after(sim: GitHubSim, seconds: int) -> str | None:
    """The `retry-after` of a secondary-limit refusal, as the setting says (called after the
    refusal was counted, so "mixed" turns with each one)."""
    mode = sim.settings.secondary_retry_after
    if mode == "mixed":
        mode = ("seconds", "blank", "absent")[(sim.secondary.refusals() - 1) % 3]
    return {"seconds": str(seconds), "blank": "", "absent": None}[mode]


def _secondary_limited(
    sim: GitHubSim,
    caller: Caller,
    base: dict[str, str],
    retry_after: str | None,
    status: int | None = None,
) -> Response:
    """GitHub's secondary-limit answer; the primary limit's headers as usual."""
    chosen = status if status is not None else sim.settings.rate_limit_status
    quota = sim.rate_limiter.quota(caller.bucket, caller.limit)
    message = (
        "You have exceeded a secondary rate limit. Please wait a few minutes before you try "
        "again. If you reach out to GitHub Support for help, please include the request ID "
        f"{base['x-github-request-id']}."
    )
    headers = {} if retry_after is None else {"retry-after": retry_after}
    return _send(
        ApiReply(chosen, error_body(chosen, message, SECONDARY_DOCS), headers), base, quota
    )


def _fault(sim: GitHubSim, request: Request, fault: Fault, base: dict[str, str]) -> Response:
    if not fault.secondary:
        try:
            message = HTTPStatus(fault.status).phrase
        except ValueError:
            message = "Server Error"
        if fault.status in (500, 502):
            message = "Server Error"
        return _send(ApiReply(fault.status, error_body(fault.status, message)), base, None)
    sim.secondary.injected += 1
    caller = _payer(sim, request, "token")
    return _secondary_limited(sim, caller, base, fault.retry_after, fault.status)


def _send(reply: ApiReply, base: dict[str, str], quota: Quota | None) -> Response:
    headers = dict(base)
    if quota is not None:
        headers.update(quota.headers())
    headers.update(reply.headers)
    if reply.body is None:
        return Response(b"", reply.status, headers)
    return Response(
        _json(reply), reply.status, headers, media_type="application/json; charset=utf-8"
    )
