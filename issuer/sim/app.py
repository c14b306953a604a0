"""The simulator's ASGI app: GitHub's API (under `api_prefix`), the log blobs, the web UI's
live-log pages, the control API."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.routing import Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from issuer.sim.api import api_routes, fallback_route
from issuer.sim.blobs import BLOB_ROUTE, serve_blob
from issuer.sim.control import control_routes
from issuer.sim.simulator import GitHubSim
from issuer.sim.web import web_routes

CONTROL_PREFIX = "/_sim/"


class _RequestLog:
    """Appends (method, path, status, had Authorization) for every GitHub and blob request.

    Recorded as the response starts, so a test that has its answer always finds the entry.
    """

    def __init__(self, app: ASGIApp, sim: GitHubSim) -> None:
        self.app = app
        self.sim = sim

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(CONTROL_PREFIX):
            await self.app(scope, receive, send)
            return
        had_auth = any(name.lower() == b"authorization" for name, _ in scope["headers"])

        async def record(message: Message) -> None:
            if message["type"] == "http.response.start":
                with self.sim.lock:
                    self.sim.request_log.append(
                        (scope["method"], scope["path"], message["status"], had_auth)
                    )
            await send(message)

        await self.app(scope, receive, record)


def create_sim_app(sim: GitHubSim) -> Starlette:
    routes = [
        *control_routes(sim),
        Route(BLOB_ROUTE, serve_blob, methods=["GET", "HEAD"]),
        *api_routes(sim),
        *web_routes(sim),
        fallback_route(sim),
    ]
    app = Starlette(routes=routes)
    app.state.sim = sim
    app.add_middleware(_RequestLog, sim=sim)
    return app
