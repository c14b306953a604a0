"""The builder service as the operator runs it: its own OS process, configured by BUILDER_*."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import time

import httpx

from issuer.web.serving import bound_socket

SERVE = ("issuer.cli", "builder", "serve")


class BuilderProcess:
    """``issuer builder serve`` (or ``command``) as its own OS process."""

    def __init__(self, env: dict[str, str], command: tuple[str, ...] = SERVE) -> None:
        sock, metrics = bound_socket(), bound_socket()
        self.port, metrics_port = sock.getsockname()[1], metrics.getsockname()[1]
        sock.close()
        metrics.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}"
        clean = {k: v for k, v in os.environ.items() if not k.startswith("BUILDER_")}
        clean["BUILDER_METRICS_ADDRESS"] = f"127.0.0.1:{metrics_port}"
        self.env = env
        self._log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", *command, "--port", str(self.port)],
            env={**clean, "BUILDER_URL": self.url, **env},
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"builder service exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                time.sleep(0.1)
        raise RuntimeError("builder service did not become ready")

    def output(self) -> str:
        self._log.seek(0)
        return self._log.read()

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.output()
