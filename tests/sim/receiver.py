"""A webhook receiver on 127.0.0.1 for the delivery tests: keeps every request it got, answers
the status a test sets, and can hold its answers until a test lets them go."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import threading
from dataclasses import dataclass
from typing import Any

from githubkit_schemas.v2022_11_28.webhooks import WorkflowJobEvent, WorkflowRunEvent
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from issuer.web.serving import BackgroundServer, bound_socket

SECRET = "it's a secret to everybody"
_SCHEMAS: dict[str, TypeAdapter[Any]] = {
    "workflow_job": TypeAdapter(WorkflowJobEvent),
    "workflow_run": TypeAdapter(WorkflowRunEvent),
}


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # lower-case names
    body: bytes

    @property
    def event(self) -> str:
        return self.headers["x-github-event"]

    @property
    def delivery_id(self) -> str:
        return self.headers["x-github-delivery"]

    @property
    def payload(self) -> Any:
        return json.loads(self.body)

    @property
    def action(self) -> str:
        return str(self.payload["action"])


def validated(received: Received, secret: str = SECRET) -> Any:
    """The delivery's payload, after checking it as a GitHub App's receiver would: the
    signature over the exact body bytes, GitHub's headers, and the payload against
    githubkit-schemas' webhook models for its event."""
    headers = received.headers
    expected = "sha256=" + hmac.new(secret.encode(), received.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["x-hub-signature-256"], expected), "bad signature"
    assert headers["content-type"] == "application/json"
    assert headers["user-agent"].startswith("GitHub-Hookshot/")
    assert headers["x-github-hook-installation-target-type"] == "integration"
    assert headers["x-github-hook-installation-target-id"].isdigit()
    assert headers["x-github-hook-id"].isdigit()
    assert len(headers["x-github-delivery"]) == 36
    payload = received.payload
    _SCHEMAS[received.event].validate_python(payload)
    assert set(payload["installation"]) == {"id", "node_id"}
    return payload


class Receiver:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._got: list[Received] = []
        self.status = 202
        self.gate = threading.Event()
        self.gate.set()
        app = Starlette(routes=[Route("/hook", self._hook, methods=["POST"])])
        self._server = BackgroundServer(app, sockets=[bound_socket()]).start()
        self.url = self._server.url_of(0) + "/hook"

    async def _hook(self, request: Request) -> Response:
        body = await request.body()
        await asyncio.to_thread(self.gate.wait, 10)  # a sender that waited would hang no longer
        with self._lock:
            self._got.append(Received(dict(request.headers), body))
        return Response(status_code=self.status)

    @property
    def got(self) -> list[Received]:
        with self._lock:
            return list(self._got)

    def reset(self) -> Receiver:
        with self._lock:
            self._got.clear()
        self.status = 202
        self.gate.set()
        return self

    def stop(self) -> None:
        self.gate.set()
        self._server.stop()
