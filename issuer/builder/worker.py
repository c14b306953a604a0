"""One builder: its own OS process, on a loopback socket its service bound for it.

Started as ``python -m issuer.builder.worker --fd N`` by :mod:`.process`, with its settings
(and its credential) on stdin, never in arguments or the environment. It answers:

- ``POST /build`` with ``Authorization: Bearer BUILD_TOKEN`` and a ``.tar.gz`` context: runs
  its ``build.sh`` in the scratch directory within the time limit, answers the exit code and
  output.
- ``DELETE /`` with the same token: stops any build, removes the scratch directory, tells the
  service to revoke the token, answers, and exits.

Every request's token is checked by introspection (RFC 7662) at the service; only a token
bound to this builder is accepted. At its expiry time the builder removes its scratch
directory and exits by itself, even if its service is gone.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import shutil
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from issuer.builder import errors
from issuer.builder.context import Build, ContextError, build_environment, clear, unpack
from issuer.web.errors import ApiError

MAX_CONTEXT = 16 * 1024 * 1024
EXIT_RELEASED, EXIT_EXPIRED, EXIT_STOPPED = 0, 3, 4


@dataclass(frozen=True)
class WorkerSettings:
    builder_id: str
    credential: str
    service_url: str
    scratch: Path
    expires_at: float
    build_timeout: float

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WorkerSettings:
        return cls(
            builder_id=str(raw["builder_id"]),
            credential=str(raw["credential"]),
            service_url=str(raw["service_url"]).rstrip("/"),
            scratch=Path(raw["scratch"]),
            expires_at=float(raw["expires_at"]),
            build_timeout=float(raw["build_timeout"]),
        )


def _error(error: ApiError) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    body = {"error": error.code, "error_description": error.description}
    return JSONResponse(body, status_code=error.status, headers=headers)


class Worker:
    def __init__(self, settings: WorkerSettings, http: httpx.AsyncClient) -> None:
        self.settings = settings
        self.http = http
        self.exit_code = EXIT_STOPPED
        self.server: uvicorn.Server | None = None
        self._build: Build | None = None
        self._lock = asyncio.Lock()

    async def authorize(self, request: Request) -> None:
        """Accept only an active build token bound to this builder (introspected)."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise errors.BUILD_TOKEN.error()
        try:
            response = await self.http.post(
                f"{self.settings.service_url}/introspect",
                data={"token": token.strip(), "token_type_hint": "access_token"},
                auth=(self.settings.builder_id, self.settings.credential),
            )
            answer = response.json() if response.status_code == 200 else None
        except (httpx.HTTPError, ValueError):
            answer = None
        if not isinstance(answer, dict):
            raise errors.INTROSPECTION_FAILED.error()
        if answer.get("active") is not True or answer.get("builder_id") != self.settings.builder_id:
            raise errors.BUILD_TOKEN.error()

    async def build(self, request: Request) -> Response:
        await self.authorize(request)
        if self._lock.locked():
            raise errors.BUILDER_BUSY.error()
        async with self._lock:
            archive = await _read_body(request, MAX_CONTEXT)
            scratch = self.settings.scratch
            try:
                await asyncio.to_thread(clear, scratch)
                await asyncio.to_thread(unpack, archive, scratch)
            except ContextError as error:
                raise errors.CONTEXT_INVALID.error(str(error)) from None
            remaining = self.settings.expires_at - time.time()
            self._build = Build()
            result = await self._build.run(
                scratch,
                build_environment(scratch, self.settings.builder_id),
                min(self.settings.build_timeout, remaining),
            )
            self._build = None
        return JSONResponse(result.as_json(), headers={"Cache-Control": "no-store"})

    async def release(self, request: Request) -> Response:
        await self.authorize(request)
        self.cleanup()
        try:
            await self.http.post(
                f"{self.settings.service_url}/builders/{self.settings.builder_id}/release",
                auth=(self.settings.builder_id, self.settings.credential),
            )
        except httpx.HTTPError:
            pass  # the service frees the slot anyway once it sees this process exit
        self.stop(EXIT_RELEASED)
        return JSONResponse({"released": True, "builder_id": self.settings.builder_id})

    def cleanup(self) -> None:
        """Stop any build and remove the scratch directory."""
        if self._build is not None:
            self._build.kill()
        shutil.rmtree(self.settings.scratch, ignore_errors=True)

    def stop(self, code: int) -> None:
        self.exit_code = code
        if self.server is not None:
            self.server.should_exit = True

    async def expire(self) -> None:
        await asyncio.sleep(max(0.0, self.settings.expires_at - time.time()))
        self.cleanup()
        self.stop(EXIT_EXPIRED)

    def app(self) -> Starlette:
        async def on_error(request: Request, exc: Exception) -> Response:
            assert isinstance(exc, ApiError)
            return _error(exc)

        return Starlette(
            routes=[
                Route("/build", self.build, methods=["POST"]),
                Route("/", self.release, methods=["DELETE"]),
            ],
            exception_handlers={ApiError: on_error},
        )


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise errors.CONTEXT_TOO_LARGE.error(f"at most {limit} bytes")
    body = bytearray()
    async for chunk in request.stream():
        body.extend(chunk)
        if len(body) > limit:
            raise errors.CONTEXT_TOO_LARGE.error(f"at most {limit} bytes")
    return bytes(body)


async def serve(settings: WorkerSettings, sock: socket.socket) -> int:
    async with httpx.AsyncClient(timeout=10) as http:
        worker = Worker(settings, http)
        config = uvicorn.Config(worker.app(), log_level="warning", access_log=False, lifespan="off")
        worker.server = uvicorn.Server(config)
        expiry = asyncio.create_task(worker.expire())
        print("ready", flush=True)  # the service waits for this line
        try:
            await worker.server.serve(sockets=[sock])
        finally:
            expiry.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await expiry
            worker.cleanup()
        return worker.exit_code


def main() -> int:
    parser = argparse.ArgumentParser(prog="issuer.builder.worker")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket's descriptor")
    args = parser.parse_args()
    settings = WorkerSettings.from_json(json.loads(sys.stdin.readline()))
    sock = socket.socket(fileno=args.fd)
    return asyncio.run(serve(settings, sock))


if __name__ == "__main__":
    sys.exit(main())
