"""A registry on loopback and a tiny base image, for ``issuer demo`` and the tests.

The registry is Debian's ``docker-registry`` (the CNCF distribution registry) with a config
of our own, on a free loopback port, storing under a temporary directory. The base image is
``busybox-static``'s one binary in an image made ``FROM scratch`` by buildah on this machine,
so no build here ever needs the internet.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from types import TracebackType

BUSYBOX = Path("/bin/busybox")
BASE_REPOSITORY = "base/busybox"


class LocalRegistryError(RuntimeError):
    """What is missing to run the registry or make the base image."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class LocalRegistry:
    """``docker-registry serve`` on ``127.0.0.1:PORT``; a context manager."""

    def __init__(self, *, htpasswd: str | None = None) -> None:
        """``htpasswd``: the contents of an htpasswd file (bcrypt): the registry then asks
        for HTTP Basic credentials."""
        self._htpasswd = htpasswd
        self.port = _free_port()
        self.host = f"127.0.0.1:{self.port}"
        self._directory = Path(tempfile.mkdtemp(prefix="issuer-registry-"))
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> LocalRegistry:
        binary = shutil.which("docker-registry")
        if binary is None:
            raise LocalRegistryError("docker-registry is not installed (Debian: docker-registry)")
        config = self._directory / "config.yml"
        config.write_text(
            "version: 0.1\n"
            "log:\n  level: error\n  accesslog:\n    disabled: true\n"
            f"storage:\n  filesystem:\n    rootdirectory: {self._directory / 'data'}\n"
            "  delete:\n    enabled: true\n"
            f"http:\n  addr: {self.host}\n"
        )
        if self._htpasswd is not None:
            users = self._directory / "htpasswd"
            users.write_text(self._htpasswd)
            with config.open("a") as file:
                file.write(f"auth:\n  htpasswd:\n    realm: registry\n    path: {users}\n")
        self._process = subprocess.Popen(  # noqa: S603  (our own config, our own binary)
            [binary, "serve", str(config)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    return self
            except OSError:
                if self._process.poll() is not None:
                    break
                time.sleep(0.05)
        self.stop()
        raise LocalRegistryError("docker-registry did not start")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()
            self._process = None
        shutil.rmtree(self._directory, ignore_errors=True)

    def __enter__(self) -> LocalRegistry:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()


def push_busybox_base(registry_host: str, tag: str = "1") -> str:
    """Make the busybox base image with buildah (as this machine's trusted user, from the
    machine's own ``/bin/busybox``) and push it to ``registry_host``; returns its reference."""
    if shutil.which("buildah") is None:
        raise LocalRegistryError("buildah is not installed (Debian: buildah)")
    if not BUSYBOX.is_file():
        raise LocalRegistryError("/bin/busybox is missing (Debian: busybox-static)")
    reference = f"{registry_host}/{BASE_REPOSITORY}:{tag}"
    storage = Path(tempfile.mkdtemp(prefix="issuer-base-image-"))
    buildah = [
        "buildah",
        "--root",
        str(storage / "root"),
        "--runroot",
        str(storage / "run"),
        "--storage-driver",
        "vfs",
    ]

    def run(*arguments: str) -> str:
        done = subprocess.run(  # noqa: S603  (fixed arguments)
            [*buildah, *arguments], capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            raise LocalRegistryError(f"buildah {arguments[0]} failed: {done.stderr.strip()}")
        return done.stdout.strip()

    try:
        container = run("from", "--quiet", "scratch")
        run("copy", container, str(BUSYBOX), "/bin/busybox")
        run("run", "--isolation", "chroot", container, "/bin/busybox", "--install", "-s", "/bin")
        run("config", "--cmd", "/bin/sh", "--env", "PATH=/bin", container)
        run("commit", "--quiet", "--format", "oci", container, reference)
        run("push", "--quiet", "--tls-verify=false", reference)
    finally:
        shutil.rmtree(storage, ignore_errors=True)
    return reference
