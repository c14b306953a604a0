"""The builders: each its own OS process on a loopback port, building in its sandbox.

The service binds a fresh loopback socket and hands it to the new process (so the endpoint
exists before the process has started), makes a fresh scratch directory (mode 0700) under
``BUILDER_SCRATCH_ROOT``, and passes the builder's settings on stdin. The process gets an
environment holding only ``PATH`` (and ``PYTHONPATH`` if set): no Redis URL, no admin token,
no shared cache directory. It is the builder's trusted side: everything the build runs goes
through its sandbox (:mod:`.sandbox`). One task per builder waits for the process to end,
stops it at its expiry time if it has not stopped itself, removes the scratch directory, and
reports why it stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from issuer.builder.backend import (
    STOP_CRASHED,
    STOP_EXPIRED,
    STOP_RELEASED,
    STOP_SHUTDOWN,
    BackendError,
    Builder,
    BuilderSpec,
    OnStopped,
)
from issuer.builder.imagebuild import ImageSettings
from issuer.builder.push import PushTarget, credentials_for
from issuer.builder.sandbox import discard_cgroups
from issuer.builder.worker import EXIT_EXPIRED, EXIT_RELEASED

log = logging.getLogger(__name__)

READY_TIMEOUT = 15.0
STOP_GRACE = 5.0
EXPIRY_GRACE = 2.0


@dataclass
class _Running:
    spec: BuilderSpec
    process: asyncio.subprocess.Process
    scratch: Path
    watcher: asyncio.Task[None] | None = None
    stop_reason: str | None = None


class BuilderProcesses:
    name = "buildah"

    def __init__(
        self,
        scratch_root: Path,
        on_stopped: OnStopped,
        images: ImageSettings,
        *,
        registry_auth_file: Path | None = None,
    ) -> None:
        self._root = scratch_root
        self._on_stopped = on_stopped
        self._images = images
        self._auth_file = registry_auth_file
        self._running: dict[str, _Running] = {}

    def scratch_of(self, builder_id: str) -> Path | None:
        """The scratch directory of a running builder (for tests and the demo)."""
        running = self._running.get(builder_id)
        return None if running is None else running.scratch

    def running(self) -> list[str]:
        return list(self._running)

    async def start(self, spec: BuilderSpec) -> Builder:
        # Builders' sandboxes pass through (never list) the root to their own directories.
        self._root.mkdir(parents=True, exist_ok=True, mode=0o711)
        self._root.chmod(0o711)
        scratch = Path(tempfile.mkdtemp(prefix=f"{spec.id}-", dir=self._root))
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            sock.bind(("127.0.0.1", 0))
            sock.listen(64)
            port = sock.getsockname()[1]
            process = await self._spawn(spec, scratch, sock)
        except BaseException:
            sock.close()
            shutil.rmtree(scratch, ignore_errors=True)
            raise
        sock.close()  # the builder process holds the only copy now
        running = _Running(spec, process, scratch)
        self._running[spec.id] = running
        try:
            await self._wait_ready(process)
        except BackendError:
            running.stop_reason = STOP_CRASHED
            self._terminate(process)
            await process.wait()
            shutil.rmtree(scratch, ignore_errors=True)
            del self._running[spec.id]
            raise
        running.watcher = asyncio.create_task(self._watch(running))
        return Builder(
            id=spec.id,
            endpoint=f"http://127.0.0.1:{port}",
            ephemeral=True,
            cache=False,
            expires_at=spec.expires_at,
        )

    async def _spawn(
        self, spec: BuilderSpec, scratch: Path, sock: socket.socket
    ) -> asyncio.subprocess.Process:
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LANG": "C.UTF-8"}
        if os.environ.get("PYTHONPATH"):
            env["PYTHONPATH"] = os.environ["PYTHONPATH"]
        fd = sock.fileno()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "issuer.builder.worker",
                "--fd",
                str(fd),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=None,
                env=env,
                cwd=scratch,
                pass_fds=(fd,),
                start_new_session=True,
            )
        except OSError as error:
            raise BackendError(f"cannot start a builder process: {error}") from None
        settings = {
            "builder_id": spec.id,
            "credential": spec.credential,
            "service_url": spec.service_url,
            "scratch": str(scratch),
            "expires_at": spec.expires_at,
            "build_timeout": spec.build_timeout,
            "images": self._image_settings(spec),
        }
        assert process.stdin is not None
        process.stdin.write(json.dumps(settings).encode() + b"\n")
        await process.stdin.drain()
        process.stdin.close()
        return process

    def _image_settings(self, spec: BuilderSpec) -> dict[str, object]:
        images = self._images
        push: dict[str, object] | None = None
        if spec.push is not None and spec.push_tag is not None:
            target = PushTarget(spec.push, spec.push_tag)
            credentials = credentials_for(self._auth_file, target.host)
            push = {
                "repository": spec.push,
                "tag": spec.push_tag,
                "insecure": target.host in images.insecure_registries,
                "username": credentials[0] if credentials else None,
                "password": credentials[1] if credentials else None,
            }
        return {
            "registries": list(images.registries),
            "insecure_registries": list(images.insecure_registries),
            "limits": {
                "memory": images.limits.memory,
                "pids": images.limits.pids,
                "disk": images.limits.disk,
            },
            "push": push,
            "egress": spec.egress,
            "sandbox": images.sandbox,
            "egress_rules": images.egress_rules,
        }

    async def _wait_ready(self, process: asyncio.subprocess.Process) -> None:
        assert process.stdout is not None
        try:
            line = await asyncio.wait_for(process.stdout.readline(), READY_TIMEOUT)
        except TimeoutError:
            line = b""
        if line.strip() != b"ready":
            raise BackendError("the builder process did not start")

    async def _watch(self, running: _Running) -> None:
        process = running.process
        deadline = running.spec.expires_at + EXPIRY_GRACE - time.time()
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), max(0.0, deadline))
        except TimeoutError:
            running.stop_reason = running.stop_reason or STOP_EXPIRED
            await self._stop_process(process)
        code = process.returncode
        await asyncio.to_thread(discard_cgroups, running.spec.id)
        shutil.rmtree(running.scratch, ignore_errors=True)
        self._running.pop(running.spec.id, None)
        reason = running.stop_reason or {
            EXIT_RELEASED: STOP_RELEASED,
            EXIT_EXPIRED: STOP_EXPIRED,
        }.get(code if code is not None else -1, STOP_CRASHED)
        try:
            await self._on_stopped(running.spec.id, reason)
        except Exception:
            log.exception("recording the stop of builder %s failed", running.spec.id)

    @staticmethod
    def _terminate(process: asyncio.subprocess.Process) -> None:
        with contextlib.suppress(ProcessLookupError):
            process.terminate()

    async def _stop_process(self, process: asyncio.subprocess.Process) -> None:
        self._terminate(process)
        try:
            await asyncio.wait_for(asyncio.shield(process.wait()), STOP_GRACE)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()

    async def stop(self, builder_id: str, reason: str = STOP_SHUTDOWN) -> None:
        running = self._running.get(builder_id)
        if running is None:
            return
        running.stop_reason = running.stop_reason or reason
        await self._stop_process(running.process)
        if running.watcher is not None:
            await running.watcher

    async def close(self) -> None:
        await asyncio.gather(*(self.stop(bid) for bid in list(self._running)))
