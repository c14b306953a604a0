"""The processes the benchmarks start on loopback: the GitHub simulator, and helpers to wait
for a service and stop one."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Sequence

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

    def refusals(self) -> int:
        """Answers 403 or 429 so far."""
        entries = httpx.get(f"{self.url}/_sim/requests", timeout=30).json()
        return sum(1 for entry in entries if entry["status"] in (403, 429))

    def stop(self) -> None:
        stop(self.process)
