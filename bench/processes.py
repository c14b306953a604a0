"""The processes the benchmarks start on loopback: the GitHub simulator, and helpers to wait
for a service and stop one."""

from __future__ import annotations

import base64
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import httpx

from tests.redis_server import free_port


def wait_ready(url: str, timeout: float = 30) -> None:
    """Until ``url``'s ``/readyz`` answers 200."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{url} did not become ready")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time the process has used so far (Linux: ``/proc/PID/stat``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT, then SIGKILL if it does not exit within 15 s."""
    if process.poll() is None:
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


class SimProcess:
    """``issuer github-sim`` in its own process, driven through its control API, so that the
    load client and GitHub's stand-in do not compete for one interpreter."""

    def __init__(self, latency: float, tokens: Sequence[str], limit: int) -> None:
        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "issuer.cli", "github-sim", "--port", str(port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.put(f"{self.url}/_sim/settings", json={"latency": latency}, timeout=2)
                break
            except httpx.HTTPError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        for token in tokens:
            httpx.post(f"{self.url}/_sim/tokens", json={"token": token, "limit": limit})

    def counted(self, token: str) -> int:
        """The requests of ``token`` that counted against its primary limit."""
        answer = httpx.get(f"{self.url}/_sim/rate-limit", params={"token": token})
        return int(answer.json()["counted"])

    def secondary(self, token: str | None = None) -> dict[str, Any]:
        """The secondary limit's record: of every bucket, or of ``token``'s (its points, its
        peak points per minute, its refusals)."""
        params = {"token": token} if token else {}
        answer = httpx.get(f"{self.url}/_sim/secondary-limit", params=params, timeout=30)
        return dict(answer.json())

    def deliver_to(self, url: str, secret: str) -> None:
        """GitHub's webhook deliveries go to ``url``, signed with ``secret``."""
        answer = httpx.put(
            f"{self.url}/_sim/webhook", json={"url": url, "secret": secret}, timeout=10
        )
        answer.raise_for_status()

    def refusals(self) -> int:
        """Answers 403 or 429 so far."""
        entries = httpx.get(f"{self.url}/_sim/requests", timeout=30).json()
        return sum(1 for entry in entries if entry["status"] in (403, 429))

    def stop(self) -> None:
        stop(self.process)


class Replicas:
    """``issuer serve`` processes on one Redis and one key-encryption key, reading GitHub with
    ``tokens``, the abuse limits off (the load comes from one address); ``env`` adds
    settings, ``logs`` keeps each replica's output in ``replica-PORT.log``."""

    def __init__(
        self,
        count: int,
        github_url: str,
        redis_url: str,
        tokens: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        logs: Path | None = None,
    ) -> None:
        kek = base64.b64encode(os.urandom(32)).decode()
        self.urls: list[str] = []
        self.processes: list[subprocess.Popen[bytes]] = []
        for _ in range(count):
            port = free_port()
            url = f"http://127.0.0.1:{port}"
            settings = {
                **os.environ,
                "ISSUER_URL": url,
                "ISSUER_REDIS_URL": redis_url,
                "ISSUER_KEY_ENCRYPTION_KEY": kek,
                "ISSUER_GITHUB_API_URL": github_url,
                "ISSUER_GITHUB_TOKEN": ",".join(tokens),
                "ISSUER_CLAIMS_PER_ADDRESS": "0",
                "ISSUER_CLAIMS_PER_REPOSITORY": "0",
                "ISSUER_CLAIMS_PER_RUN": "0",
                # each replica its own metrics listener (the default port is one per host)
                "ISSUER_METRICS_ADDRESS": f"127.0.0.1:{free_port()}",
                **(env or {}),
            }
            output = open(logs / f"replica-{port}.log", "w") if logs else subprocess.DEVNULL
            self.processes.append(
                subprocess.Popen(
                    [sys.executable, "-m", "issuer.cli", "serve", "--port", str(port)],
                    env=settings,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                )
            )
            self.urls.append(url)
        try:
            for url in self.urls:
                wait_ready(url)
        except BaseException:
            self.stop()
            raise

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self.processes]

    def signal(self, signum: int) -> None:
        for process in self.processes:
            process.send_signal(signum)

    def stop(self) -> None:
        for process in self.processes:
            stop(process)
