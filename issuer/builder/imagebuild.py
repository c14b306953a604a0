"""One image build on a builder: the context in, a stream of Docker-style lines out.

The trusted side (this module, in the builder's own process) unpacks the context, reads the
Dockerfile's base images and refuses any outside ``BUILDER_REGISTRIES``, pulls them itself
into the builder's own storage, runs ``buildah bud`` in the sandbox without network (the
build's steps are the stranger's code; with the trust relationship's ``egress``, behind the
walls of :mod:`.egress`), has the sandbox export the image as an OCI layout,
verifies that layout as untrusted input, writes the OCI archive, and pushes the image where
the trust relationship says, with credentials the sandbox never sees.

Each line of the stream is a JSON object as the Docker Engine API streams a build:
``{"stream": TEXT}`` for output, a last ``{"error": ..., "errorDetail": {"message": ...}}``
on failure, a last ``{"aux": {"ID", "digest", "pushed"}}`` on success.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import time
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from issuer.builder import dockerfile, oci
from issuer.builder.context import unpack
from issuer.builder.egress import DNS, EgressError, Uplink, check_host, child_pid
from issuer.builder.push import PushError, PushTarget, RegistryClient
from issuer.builder.sandbox import Confinement, IdBlock, Limits, Network, Sandbox

IMAGE_NAME = "localhost/build:latest"
MAX_LINE = 16 * 1024
DISK_CHECK_SECONDS = 0.5
_STORAGE = ("--storage-driver", "vfs")


@dataclass(frozen=True)
class ImageSettings:
    """What the service decided for this builder (nothing the build can change)."""

    registries: tuple[str, ...]
    insecure_registries: tuple[str, ...] = ()
    limits: Limits = field(default_factory=lambda: Limits(2 << 30, 1024, 10 << 30))
    push: PushTarget | None = None
    egress: bool = False
    """The build's steps may reach the internet (the trust relationship's ``egress``)."""
    sandbox: bool = True
    """False only in the attack tests (no setting of the service reaches it)."""
    egress_rules: bool = True
    """False only in the egress tests: egress without its nftables rules, and slirp4netns
    reaching the host's loopback (no setting of the service reaches it)."""


@dataclass(frozen=True)
class BuildRequest:
    """The Docker Engine API's build parameters."""

    dockerfile: str = "Dockerfile"
    target: str | None = None
    build_args: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)


class BuildFailed(Exception):
    """Ends the stream with an error line; the message is for the person watching."""


def stream(text: str) -> dict[str, Any]:
    return {"stream": text if text.endswith("\n") else text + "\n"}


def error(message: str) -> dict[str, Any]:
    return {"error": message, "errorDetail": {"message": message}}


def disk_usage(directory: Path) -> int:
    """Bytes allocated under ``directory`` (links not followed)."""
    total = 0
    for root, dirs, files in os.walk(directory, followlinks=False):
        for name in dirs + files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, name)).st_blocks * 512
    return total


class ImageBuild:
    """Builds in ``scratch`` (the builder's directory, 0700, the service's), as ``block``."""

    def __init__(
        self,
        scratch: Path,
        block: IdBlock,
        settings: ImageSettings,
        confinement: Confinement,
        http: httpx.AsyncClient,
    ) -> None:
        self.scratch = scratch
        self.box = scratch / "box"
        self.etc = scratch / "etc"
        self.archive = scratch / "image.tar"
        self.resolv = scratch / "resolv.conf"
        self.block = block
        self.settings = settings
        self.confinement = confinement
        self._http = http
        self._process: asyncio.subprocess.Process | None = None
        self.sandbox = Sandbox(
            self.box, self.etc, block, confinement, enabled=settings.sandbox, resolv=self.resolv
        )

    # -- preparing the builder's directory -------------------------------------------------

    def prepare(self, context: bytes) -> None:
        """A fresh directory for this build: the context unpacked, owned by the build's ids;
        the generated ``/etc``; nothing of an earlier build. Raises ContextError."""
        for path in (self.box, self.etc, self.archive, self.resolv):
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
        if self.settings.sandbox:
            # The sandbox's ids (its group) may pass through to its own directory and /etc
            # to bind them; nobody else may, and nobody may list it (the scratch root is
            # 0711: see BuilderProcesses).
            os.chown(self.scratch, -1, self.block.gid)
            self.scratch.chmod(0o710)
        self.box.mkdir(mode=0o755)
        for name in ("context", "storage", "run", "tmp", "home"):
            (self.box / name).mkdir(mode=0o700)
        unpack(context, self.box / "context")
        self._write_etc()
        if self.settings.sandbox:
            for root, dirs, files in os.walk(self.box, followlinks=False):
                for name in [root, *(os.path.join(root, n) for n in dirs + files)]:
                    os.lchown(name, self.block.uid, self.block.gid)

    def _write_etc(self) -> None:
        etc = self.etc
        (etc / "containers").mkdir(parents=True, mode=0o755)
        etc.chmod(0o755)
        (etc / "passwd").write_text("root:x:0:0:root:/build/home:/bin/sh\n")
        (etc / "group").write_text("root:x:0:\n")
        (etc / "hosts").write_text("127.0.0.1 localhost builder\n")
        # Empty (as if absent) but there: an egress step's resolv.conf is mounted on it.
        (etc / "resolv.conf").write_text("")
        self.resolv.write_text(f"nameserver {DNS}\n")
        self.resolv.chmod(0o644)
        allowed = [r.lower() for r in self.settings.registries]
        search = '["docker.io"]' if dockerfile.DOCKER_HUB in allowed else "[]"
        lines = [f"unqualified-search-registries = {search}", 'short-name-mode = "permissive"']
        for registry in self.settings.insecure_registries:
            lines += ["", "[[registry]]", f'location = "{registry}"', "insecure = true"]
        (etc / "containers" / "registries.conf").write_text("\n".join(lines) + "\n")
        # Signatures are not checked: base images come only from the operator's registries.
        (etc / "containers" / "policy.json").write_text(
            '{"default": [{"type": "insecureAcceptAnything"}]}\n'
        )
        for path in etc.rglob("*"):
            path.chmod(0o755 if path.is_dir() else 0o644)

    def _dockerfile(self, name: str) -> str:
        context = (self.box / "context").resolve()
        path = (context / name).resolve()
        if os.path.isabs(name) or not path.is_relative_to(context) or not path.is_file():
            raise BuildFailed(f"the context has no Dockerfile at {name!r}")
        if path.stat().st_size > dockerfile.MAX_DOCKERFILE:
            raise BuildFailed("the Dockerfile is over 1 MiB")
        return str(path.relative_to(context))

    # -- running commands in the sandbox ---------------------------------------------------

    def _buildah(self, *arguments: str) -> list[str]:
        return [
            "buildah",
            "--root",
            self.sandbox.inside("storage"),
            "--runroot",
            self.sandbox.inside("run"),
            *_STORAGE,
            *arguments,
        ]

    async def _run(
        self, argv: list[str], *, network: Network, deadline: float, show: bool
    ) -> AsyncIterator[dict[str, Any]]:
        """Run one sandboxed command, streaming its output when ``show``; raises BuildFailed
        when it fails or reaches a limit."""
        environment = self.sandbox.environment() if not self.settings.sandbox else None
        egress = network == "egress" and self.settings.sandbox
        if egress:
            try:
                check_host()
            except EgressError as problem:
                raise BuildFailed(f"the build's network could not be set up: {problem}") from None
        info_r, info_w = os.pipe() if egress else (-1, -1)
        block_r, block_w = os.pipe() if egress else (-1, -1)
        try:
            self._process = process = await asyncio.create_subprocess_exec(
                *self.sandbox.command(
                    argv,
                    network=network,
                    info_fd=info_w if egress else None,
                    block_fd=block_r if egress else None,
                ),
                stdin=asyncio.subprocess.DEVNULL,
                stdout=asyncio.subprocess.PIPE,
                stderr=asyncio.subprocess.STDOUT,
                env=environment or {"PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                start_new_session=True,
                pass_fds=(info_w, block_r) if egress else (),
            )
        except BaseException:
            for fd in (info_r, block_w):
                if fd >= 0:
                    os.close(fd)
            raise
        finally:
            for fd in (info_w, block_r):
                if fd >= 0:
                    os.close(fd)
        uplink: Uplink | None = None
        try:
            if egress:
                try:
                    uplink = await Uplink.start(
                        await child_pid(info_r), rules=self.settings.egress_rules
                    )
                except (EgressError, TimeoutError) as problem:
                    await self._end(process)
                    raise BuildFailed(
                        f"the build's network could not be set up: {problem}"
                    ) from None
                finally:
                    os.close(info_r)
                # The walls stand: the sandbox may run the command (if it has not ended).
                with contextlib.suppress(BrokenPipeError):
                    os.write(block_w, b"1")
            async for line in self._follow(process, argv, deadline, show):
                yield line
        finally:
            await self._end(process)
            if uplink is not None:
                await uplink.close()
            if block_w >= 0:
                # Only now: bubblewrap runs the command once this closes, written to or not.
                os.close(block_w)

    async def _end(self, process: asyncio.subprocess.Process) -> None:
        self.kill()
        with contextlib.suppress(ProcessLookupError):
            await process.wait()

    async def _follow(
        self, process: asyncio.subprocess.Process, argv: list[str], deadline: float, show: bool
    ) -> AsyncIterator[dict[str, Any]]:
        assert process.stdout is not None
        limit: str | None = None
        watcher = asyncio.create_task(self._watch_disk(deadline))
        tail: list[str] = []
        try:
            pending = b""
            while True:
                remaining = deadline - time.monotonic()
                try:
                    chunk = await asyncio.wait_for(process.stdout.read(65536), max(0.01, remaining))
                except TimeoutError:
                    limit = "time"
                    break
                if not chunk:
                    break
                pending += chunk
                *lines, pending = pending.split(b"\n")
                if len(pending) > MAX_LINE:
                    lines.append(pending[:MAX_LINE])
                    pending = b""
                for raw in lines:
                    line = raw[:MAX_LINE].decode("utf-8", errors="replace").rstrip("\r")
                    tail = [*tail[-19:], line]
                    if show:
                        yield stream(line)
            if pending and show:
                yield stream(pending[:MAX_LINE].decode("utf-8", errors="replace"))
            if limit is None:
                await process.wait()
        finally:
            await self._end(process)
            watcher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                disk_limit = await watcher
                limit = limit or disk_limit
            self._process = None
        if process.returncode and self.settings.sandbox:
            limit = limit or self.confinement.limit_hit()
        if limit is not None:
            raise BuildFailed(self._limit_message(limit))
        if process.returncode != 0:
            detail = next((line for line in reversed(tail) if line.strip()), "")
            raise BuildFailed(detail or f"{argv[0]} ended with status {process.returncode}")

    async def _watch_disk(self, deadline: float) -> str | None:
        while time.monotonic() < deadline:
            await asyncio.sleep(DISK_CHECK_SECONDS)
            used = await asyncio.to_thread(disk_usage, self.scratch)
            if used > self.settings.limits.disk:
                self.kill()
                return "disk"
        return None

    def _limit_message(self, limit: str) -> str:
        limits = self.settings.limits
        return {
            "time": "the build ran past its time limit (BUILDER_BUILD_TIMEOUT)",
            "disk": "the build wrote more than its disk limit "
            f"(BUILDER_DISK_LIMIT, {limits.disk} bytes)",
            "memory": "the build reached its memory limit "
            f"(BUILDER_MEMORY_LIMIT, {limits.memory} bytes)",
            "pids": f"the build reached its process limit (BUILDER_PIDS_LIMIT, {limits.pids})",
        }[limit]

    def kill(self) -> None:
        """End the running command and everything it started, now."""
        process = self._process
        if process is not None and process.returncode is None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, 9)
        if self.settings.sandbox:
            self.confinement.kill_all()

    # -- the build ---------------------------------------------------------------------------

    async def run(self, request: BuildRequest, seconds: float) -> AsyncIterator[dict[str, Any]]:
        """The build of the prepared context, as a stream ending with its error or its image,
        within ``seconds``."""
        deadline = time.monotonic() + seconds
        try:
            name = self._dockerfile(request.dockerfile)
            text = (self.box / "context" / name).read_text(encoding="utf-8", errors="replace")
            try:
                images = dockerfile.base_images(text, request.build_args)
            except dockerfile.DockerfileError as problem:
                raise BuildFailed(str(problem)) from None
            refused = dockerfile.disallowed(images, self.settings.registries)
            if refused:
                allowed = ", ".join(self.settings.registries) or "none"
                raise BuildFailed(
                    f"base image {refused[0]} is not from an allowed registry ({allowed})"
                )
            for base in images:
                yield stream(f"pulling {base}")
                pull = [
                    "pull",
                    "--quiet",
                    "--signature-policy",
                    self.sandbox.config_path("containers/policy.json"),
                ]
                if base.registry in self.settings.insecure_registries:
                    pull.append("--tls-verify=false")
                async for line in self._run(
                    self._buildah(*pull, str(base)), network="host", deadline=deadline, show=False
                ):
                    yield line
            async for line in self._run(
                self._bud(name, request),
                network="egress" if self.settings.egress else "none",
                deadline=deadline,
                show=True,
            ):
                yield line
            out = self.sandbox.inside("out")
            async for line in self._run(
                self._buildah(
                    "push",
                    "--quiet",
                    "--signature-policy",
                    self.sandbox.config_path("containers/policy.json"),
                    IMAGE_NAME,
                    f"oci:{out}:latest",
                ),
                network="none",
                deadline=deadline,
                show=False,
            ):
                yield line
            layout = self.box / "out"
            try:
                image = await asyncio.to_thread(oci.read_image, layout)
                await asyncio.to_thread(oci.write_archive, layout, image, self.archive, "latest")
            except (oci.LayoutError, OSError) as problem:
                raise BuildFailed(f"the built image cannot be used: {problem}") from None
            pushed: str | None = None
            target = self.settings.push
            if target is not None:
                yield stream(f"pushing {target}")
                try:
                    pushed = await RegistryClient(self._http, target).push(layout, image)
                except PushError as problem:
                    raise BuildFailed(f"the image could not be pushed: {problem}") from None
                yield stream(f"pushed {pushed}")
            yield {"aux": {"ID": image.config.digest, "digest": image.digest, "pushed": pushed}}
        except BuildFailed as failed:
            yield error(str(failed))

    def _bud(self, name: str, request: BuildRequest) -> list[str]:
        arguments = [
            "bud",
            "--pull=never",
            "--isolation",
            "chroot",
            "--layers=false",
            "--no-cache",
            "--format",
            "oci",
            "--signature-policy",
            self.sandbox.config_path("containers/policy.json"),
            "--file",
            self.sandbox.inside("context", name),
            "--tag",
            IMAGE_NAME,
        ]
        if not self.settings.sandbox:
            # The attack tests' switch: each step with the service's own privileges (all
            # capabilities, the host's namespaces), as a build ran before the sandbox.
            arguments += ["--cap-add", "ALL"]
        if request.target:
            arguments += ["--target", request.target]
        for key, value in request.build_args.items():
            arguments += ["--build-arg", f"{key}={value}"]
        for key, value in request.labels.items():
            arguments += ["--label", f"{key}={value}"]
        return self._buildah(*arguments, self.sandbox.inside("context"))
