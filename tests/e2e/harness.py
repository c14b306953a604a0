"""Whole flows over real loopback sockets: the GitHub simulator, issuers, the client."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import prometheus_client

from issuer.oidc.abuse import AbuseConfig
from issuer.oidc.app import create_app
from issuer.oidc.config import IssuerConfig
from issuer.oidc.service import IssuerService
from issuer.sim import GitHubSim, SimJob, SimRepo, SimRun
from issuer.store import MemoryStore, Store
from issuer.web.serving import BackgroundServer, bound_socket

GITHUB_TOKEN = "ghp_e2e_" + "x" * 28
_names = itertools.count(1)


@dataclass
class ForkRun:
    """A pull-request run of an upstream repository from a fork, as the tests drive it."""

    sim: GitHubSim
    upstream: SimRepo
    fork: SimRepo
    run: SimRun

    def job(self, name: str, *, started: bool = True) -> SimJob:
        job = self.sim.add_job(self.run, name)
        if started:
            self.sim.start_job(job)
        return job

    def client_step(self, job: SimJob, *lines: str, script: str = "issuer token claim") -> None:
        """The client's step: its header (a `run:` of ``script``), two seconds of the runner's
        time (the issuer counts no line of a step's first second), then ``lines``."""
        self.sim.start_step(job, "Fork OIDC", script=script)
        self.sim.elapse(job, 2.0)
        for line in lines:
            self.sim.print_line(job, line)
        self.sim.finish_step(job)

    def print_and_finish(self, job: SimJob, line: str) -> None:
        """A job whose only step prints ``line``, then ends (the two-job pattern's first job)."""
        self.client_step(job, line)
        self.sim.finish_job(job)

    def claim_body(self, **overrides: object) -> dict[str, object]:
        body: dict[str, object] = {
            "repository": self.upstream.full_name,
            "run_id": self.run.id,
            "event_name": "pull_request",
        }
        body.update(overrides)
        return body


def metrics_text() -> str:
    """This process's metrics, as a metrics listener serves them: the issuers that tests run
    in a thread serve none on their own port."""
    return prometheus_client.generate_latest().decode()


def bearer(claim: Mapping[str, Any]) -> dict[str, str]:
    """The headers of an exchange of ``claim`` (an answer of ``POST /claim``)."""
    return {"Authorization": f"Bearer {claim['claim_id']}"}


def fork_run(sim: GitHubSim, *, event: str = "pull_request", private: bool = False) -> ForkRun:
    n = next(_names)
    upstream = sim.add_repository(f"octo-org{n}/octo-repo", private=private)
    fork = sim.add_repository(f"contributor{n}/octo-repo", fork_of=upstream)
    run = sim.create_run(upstream, head_repository=fork, event=event, actor=f"contributor{n}")
    return ForkRun(sim, upstream, fork, run)


def base_config(github_url: str, issuer_url: str) -> IssuerConfig:
    return IssuerConfig(
        issuer_url=issuer_url,
        github_api_url=github_url,
        github_tokens=(GITHUB_TOKEN,),
        poll_interval=1,
    )


@contextmanager
def issuer_in_thread(
    github_url: str,
    *,
    store: Store | None = None,
    abuse: AbuseConfig | None = None,
    **overrides: object,
) -> Iterator[tuple[str, IssuerConfig]]:
    """An issuer served on a real socket in this process; yields its URL and config."""
    sock = bound_socket()
    url = "http://{}:{}".format(*sock.getsockname()[:2])
    config = replace(base_config(github_url, url), **overrides)  # type: ignore[arg-type]
    the_store = store or MemoryStore()
    app = create_app(lambda: IssuerService.start(config, store=the_store), abuse=abuse)
    with BackgroundServer(app, [sock]):
        yield url, config


class IssuerProcess:
    """``issuer serve`` as its own OS process, configured through the environment."""

    def __init__(self, env: dict[str, str]) -> None:
        sock, metrics = bound_socket(), bound_socket()
        self.port, metrics_port = sock.getsockname()[1], metrics.getsockname()[1]
        sock.close()
        metrics.close()
        self.url = f"http://127.0.0.1:{self.port}"
        self.metrics_url = f"http://127.0.0.1:{metrics_port}"
        full_env = {
            **os.environ,
            "ISSUER_URL": self.url,
            "ISSUER_METRICS_ADDRESS": f"127.0.0.1:{metrics_port}",
            **env,
        }
        # A file, not a pipe: a pipe nobody reads would block a chatty process.
        self._log = tempfile.TemporaryFile(mode="w+")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "issuer.cli", "serve", "--port", str(self.port)],
            env=full_env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"issuer exited: {self.output()}")
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        # Not left running: a process that never became ready is nobody's to stop later.
        raise RuntimeError(f"issuer did not become ready: {self.stop()}")

    def stop(self) -> str:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGINT)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.output()

    def output(self) -> str:
        """Everything the process printed so far."""
        self._log.seek(0)
        return self._log.read()
