"""One builder: its own OS process, on a loopback socket its service bound for it.

Started as ``python -m issuer.builder.worker --fd N`` by :mod:`.process`, with its settings
(its credential, and push credentials when a relationship names ``push``) on stdin, never in
arguments or the environment. This process is the builder's trusted side; what a build runs
goes through :mod:`.sandbox` (see :mod:`.imagebuild`). It answers (API.md, "The ephemeral
builder"):

- ``POST /build`` with ``Authorization: Bearer BUILD_TOKEN`` and a tar context (gzip
  accepted): builds the Dockerfile, streaming Docker-style JSON lines as the build runs.
- ``GET /image``: the last image built, as an OCI archive.
- ``DELETE /``: stops any build, removes the scratch directory, tells the service to revoke
  the token, answers, and exits.

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
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import Receive, Scope, Send

from issuer.builder import errors
from issuer.builder.context import ContextError
from issuer.builder.imagebuild import BuildRequest, ImageBuild, ImageSettings
from issuer.builder.push import PushTarget
from issuer.builder.sandbox import (
    Confinement,
    IdBlock,
    Limits,
    SandboxError,
    Slot,
    id_blocks,
    id_lock_directory,
)
from issuer.web.errors import ApiError

MAX_CONTEXT = 64 * 1024 * 1024
EXIT_RELEASED, EXIT_EXPIRED, EXIT_STOPPED, EXIT_NO_SANDBOX = 0, 3, 4, 5
NDJSON = "application/json"


@dataclass(frozen=True)
class WorkerSettings:
    builder_id: str
    credential: str
    service_url: str
    scratch: Path
    expires_at: float
    build_timeout: float
    images: ImageSettings

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> WorkerSettings:
        images = raw["images"]
        limits = images["limits"]
        push = images.get("push")
        return cls(
            builder_id=str(raw["builder_id"]),
            credential=str(raw["credential"]),
            service_url=str(raw["service_url"]).rstrip("/"),
            scratch=Path(raw["scratch"]),
            expires_at=float(raw["expires_at"]),
            build_timeout=float(raw["build_timeout"]),
            images=ImageSettings(
                registries=tuple(images["registries"]),
                insecure_registries=tuple(images["insecure_registries"]),
                limits=Limits(int(limits["memory"]), int(limits["pids"]), int(limits["disk"])),
                push=None if push is None else PushTarget(**push),
                egress=images.get("egress") is True,
                sandbox=bool(images["sandbox"]),
                egress_rules=images.get("egress_rules") is not False,
            ),
        )


def _error(error: ApiError) -> JSONResponse:
    headers = {"Cache-Control": "no-store"}
    if error.status == 401:
        headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
    if error.retry_after is not None:
        headers["Retry-After"] = str(error.retry_after)
    body = {"error": error.code, "error_description": error.description}
    return JSONResponse(body, status_code=error.status, headers=headers)


class BuildStream(StreamingResponse):
    """The build's JSON lines; frees the builder when the answer ends, however it ends (also
    when the client went away before the first line)."""

    def __init__(self, lines: AsyncIterator[bytes], done: asyncio.Lock) -> None:
        super().__init__(lines, media_type=NDJSON, headers={"Cache-Control": "no-store"})
        self._done = done

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            if self._done.locked():
                self._done.release()


def _json_object(request: Request, name: str) -> dict[str, str]:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return {}
    try:
        value = json.loads(raw)
    except ValueError:
        raise errors.BUILD_PARAMETER.error(f"{name} is not JSON") from None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise errors.BUILD_PARAMETER.error(f"{name} must be a JSON object of strings")
    return value


def build_request(request: Request) -> BuildRequest:
    """The Docker Engine API's build parameters, checked."""
    if len(request.query_params.getlist("dockerfile")) > 1:
        raise errors.BUILD_PARAMETER.error("dockerfile is repeated")
    dockerfile = request.query_params.get("dockerfile") or "Dockerfile"
    target = request.query_params.get("target") or None
    if len(dockerfile) > 1024 or "\0" in dockerfile:
        raise errors.BUILD_PARAMETER.error("dockerfile is not a path in the context")
    if (
        target is not None
        and not target.replace("-", "").replace("_", "").replace(".", "").isalnum()
    ):
        raise errors.BUILD_PARAMETER.error("target is not a stage name")
    return BuildRequest(
        dockerfile=dockerfile,
        target=target,
        build_args=_json_object(request, "buildargs"),
        labels=_json_object(request, "labels"),
    )


class Worker:
    def __init__(
        self, settings: WorkerSettings, http: httpx.AsyncClient, image_build: ImageBuild
    ) -> None:
        self.settings = settings
        self.http = http
        self.exit_code = EXIT_STOPPED
        self.server: uvicorn.Server | None = None
        self.image_build = image_build
        self._busy = asyncio.Lock()
        self._built = False

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
        if self._busy.locked():
            raise errors.BUILDER_BUSY.error()
        parameters = build_request(request)
        await self._busy.acquire()
        self._built = False
        try:
            context = await _read_body(request, MAX_CONTEXT)
            await asyncio.to_thread(self.image_build.prepare, context)
        except ContextError as problem:
            self._busy.release()
            raise errors.CONTEXT_INVALID.error(str(problem)) from None
        except BaseException:
            self._busy.release()
            raise
        remaining = self.settings.expires_at - time.time()
        timeout = max(1.0, min(self.settings.build_timeout, remaining))

        async def lines() -> AsyncIterator[bytes]:
            async for line in self.image_build.run(parameters, timeout):
                if "aux" in line:
                    self._built = True
                yield json.dumps(line).encode() + b"\n"

        return BuildStream(lines(), self._busy)

    async def image(self, request: Request) -> Response:
        await self.authorize(request)
        archive = self.image_build.archive
        if self._busy.locked() or not self._built or not archive.is_file():
            raise errors.NO_IMAGE.error()
        return FileResponse(
            archive,
            media_type="application/x-tar",
            headers={"Cache-Control": "no-store"},
            filename="image.oci.tar",
        )

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
        self.image_build.kill()
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
                Route("/image", self.image, methods=["GET"]),
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
    images = settings.images
    try:
        slot = Slot.acquire(id_lock_directory(), id_blocks())
    except SandboxError as problem:
        if images.sandbox:
            print(f"no sandbox: {problem}", file=sys.stderr, flush=True)
            return EXIT_NO_SANDBOX
        slot = Slot(IdBlock(0, 0), -1)  # the attack tests' unsandboxed builds only
    confinement = Confinement(settings.builder_id, images.limits, enabled=images.sandbox)
    try:
        async with httpx.AsyncClient(timeout=30, follow_redirects=False) as http:
            image_build = ImageBuild(settings.scratch, slot.block, images, confinement, http)
            worker = Worker(settings, http, image_build)
            config = uvicorn.Config(
                worker.app(), log_level="warning", access_log=False, lifespan="off"
            )
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
    finally:
        confinement.remove()
        slot.release()


def main() -> int:
    parser = argparse.ArgumentParser(prog="issuer.builder.worker")
    parser.add_argument("--fd", type=int, required=True, help="the listening socket's descriptor")
    args = parser.parse_args()
    settings = WorkerSettings.from_json(json.loads(sys.stdin.readline()))
    sock = socket.socket(fileno=args.fd)
    return asyncio.run(serve(settings, sock))


if __name__ == "__main__":
    sys.exit(main())
