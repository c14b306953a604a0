"""A stand-in for the builders' endpoints (API.md section 2, "The ephemeral builder").

It stands for ``{endpoint}/build``, ``{endpoint}/image`` and ``DELETE {endpoint}`` until the
end-to-end test with the real (buildah) builder exists. Everything around it is real: the
builder service exchanges the token and hands out this stand-in's endpoints through its
backend interface; the stand-in checks every build token by introspection at that service,
as a real builder does, and tells the service when it is deleted. Its build answer is
exactly the contract's stream: JSON lines, ``{"stream": ...}`` for output, a last ``error``
or ``aux``. A test scripts the lines, and may hold the stream at a :class:`Gate` until it has
seen what the client printed so far.
"""

from __future__ import annotations

import asyncio
import io
import json
import tarfile
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from issuer.builder.backend import (
    BackendError,
    Builder,
    BuilderBackend,
    BuilderSpec,
    OnStopped,
)
from issuer.web.serving import BackgroundServer

DIGEST = "sha256:" + "d" * 64
IMAGE_ID = "sha256:" + "c" * 64
GATE_WAIT = 30.0  # seconds a gate holds the stream if the test never opens it


class Gate:
    """Holds the build stream until the test opens it. A gate that times out instead sends
    an error line, so a client that printed nothing until the end fails its test."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def open(self) -> None:
        self._event.set()

    async def wait(self) -> bool:
        return await asyncio.to_thread(self._event.wait, GATE_WAIT)


@dataclass
class Seen:
    method: str
    path: str
    query: dict[str, str]
    authorized: bool
    token: str = field(repr=False)
    body: bytes = field(repr=False)


def stream(text: str) -> str:
    return json.dumps({"stream": text})


def failure(message: str) -> str:
    return json.dumps({"error": message, "errorDetail": {"message": message}})


def success(pushed: str | None = None, digest: str = DIGEST) -> str:
    return json.dumps({"aux": {"ID": IMAGE_ID, "digest": digest, "pushed": pushed}})


def oci_archive(digest: str = DIGEST) -> bytes:
    """A small OCI image layout whose index.json names ``digest``."""
    buffer = io.BytesIO()
    files = {
        "oci-layout": json.dumps({"imageLayoutVersion": "1.0.0"}).encode(),
        "index.json": json.dumps(
            {
                "schemaVersion": 2,
                "manifests": [
                    {
                        "mediaType": "application/vnd.oci.image.manifest.v1+json",
                        "digest": digest,
                        "size": 400,
                    }
                ],
            }
        ).encode(),
    }
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


class StandInBuilders:
    """The endpoints of every builder the service starts through :meth:`backend`."""

    def __init__(self) -> None:
        self.server = BackgroundServer(
            Starlette(
                routes=[
                    Route("/b/{builder_id}/build", self._build, methods=["POST"]),
                    Route("/b/{builder_id}/image", self._image, methods=["GET"]),
                    Route("/b/{builder_id}", self._delete, methods=["DELETE"]),
                ]
            )
        ).start()
        self.url = self.server.url
        self.specs: dict[str, BuilderSpec] = {}
        self.reset()

    def reset(self) -> None:
        self.seen: list[Seen] = []
        self.script: list[str | Gate] = [stream("STEP 1/1: FROM scratch\n"), success()]
        self.refusal: tuple[int, str, str] | None = None
        self.image: bytes | None = oci_archive()
        self.gates: list[Gate] = []
        self.starting = threading.Event()
        """Set when the service asks for a builder (the exchange is under way)."""
        self.start_gate: Gate | None = None
        """When set, a builder's start (and so the exchange's answer) waits for it."""
        self.failed_starts = 0
        """How many of the next starts fail (the service answers 503 backend_failed)."""

    def gate(self) -> Gate:
        gate = Gate()
        self.gates.append(gate)
        return gate

    def open_gates(self) -> None:
        for gate in self.gates:
            gate.open()

    def stop(self) -> None:
        self.open_gates()
        self.server.stop()

    def deletes(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.method == "DELETE"]

    def builds(self) -> list[Seen]:
        return [seen for seen in self.seen if seen.method == "POST"]

    def backend(self, scratch_root: Path, on_stopped: OnStopped) -> BuilderBackend:
        return _Backend(self, on_stopped)

    async def _seen(self, request: Request) -> tuple[Seen, BuilderSpec | None]:
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        spec = self.specs.get(request.path_params["builder_id"])
        authorized = False
        if scheme.lower() == "bearer" and spec is not None:
            async with httpx.AsyncClient(timeout=10) as http:
                answer = await http.post(
                    f"{spec.service_url}/introspect",
                    data={"token": token},
                    auth=(spec.id, spec.credential),
                )
            info = answer.json()
            authorized = info.get("active") is True and info.get("builder_id") == spec.id
        seen = Seen(
            request.method,
            request.url.path,
            dict(request.query_params),
            authorized,
            token,
            await request.body(),
        )
        self.seen.append(seen)
        return seen, spec if authorized else None

    async def _build(self, request: Request) -> Response:
        _, spec = await self._seen(request)
        if spec is None:
            return _refused(401, "invalid_token", "the build token is not active for this builder")
        if self.refusal is not None:
            return _refused(*self.refusal)

        async def lines() -> AsyncIterator[bytes]:
            for item in self.script:
                if isinstance(item, Gate):
                    if not await item.wait():
                        yield (failure("the test never opened the gate") + "\n").encode()
                        return
                else:
                    yield (item + "\n").encode()

        return StreamingResponse(lines(), media_type="application/json")

    async def _image(self, request: Request) -> Response:
        _, spec = await self._seen(request)
        if spec is None:
            return _refused(401, "invalid_token", "the build token is not active for this builder")
        if self.image is None:
            return _refused(404, "not_found", "no image was built on this builder")
        return Response(self.image, media_type="application/x-tar")

    async def _delete(self, request: Request) -> Response:
        _, spec = await self._seen(request)
        if spec is None:
            return _refused(401, "invalid_token", "the build token is not active for this builder")
        del self.specs[spec.id]
        async with httpx.AsyncClient(timeout=10) as http:
            await http.post(
                f"{spec.service_url}/builders/{spec.id}/release", auth=(spec.id, spec.credential)
            )
        return JSONResponse({"released": True, "builder_id": spec.id})


def _refused(status: int, error: str, description: str) -> Response:
    return JSONResponse({"error": error, "error_description": description}, status_code=status)


class _Backend:
    """The builder service's backend interface, starting stand-in builders."""

    name = "standin"

    def __init__(self, builders: StandInBuilders, on_stopped: OnStopped) -> None:
        self._builders = builders
        self._on_stopped = on_stopped

    async def start(self, spec: BuilderSpec) -> Builder:
        self._builders.specs[spec.id] = spec
        self._builders.starting.set()
        if self._builders.failed_starts > 0:
            self._builders.failed_starts -= 1
            del self._builders.specs[spec.id]
            raise BackendError("the stand-in was told to fail this start")
        if self._builders.start_gate is not None:
            await self._builders.start_gate.wait()
        endpoint = f"{self._builders.url}/b/{spec.id}"
        return Builder(spec.id, endpoint, ephemeral=True, cache=False, expires_at=spec.expires_at)

    async def stop(self, builder_id: str) -> None:
        if self._builders.specs.pop(builder_id, None) is not None:
            await self._on_stopped(builder_id, "released")

    async def close(self) -> None:
        self._builders.specs.clear()
