"""A replica is killed (SIGKILL) while it holds the client's long poll: the real client,
behind a round-robin proxy, retries, reaches the other replica and gets the token."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from issuer.sim import GitHubSim
from issuer.web.serving import BackgroundServer
from tests.client.runner import read_outputs, runner_env
from tests.e2e.harness import fork_run
from tests.faults.support import (
    RoundRobinProxy,
    in_progress,
    replica_env,
    replicas,
    sigkill,
    wait_until,
)


@pytest.fixture
def proxy() -> Iterator[RoundRobinProxy]:
    server = RoundRobinProxy()
    yield server
    server.stop()


def test_the_client_gets_the_token_from_another_replica_when_its_long_poll_dies(
    sim: GitHubSim,
    github: BackgroundServer,
    redis_url: str,
    proxy: RoundRobinProxy,
    tmp_path: Path,
) -> None:
    env = replica_env(redis_url, github.url_of(0), ISSUER_URL=proxy.url)
    with replicas(env) as pair:
        proxy.backends = [replica.port for replica in pair]
        pr = fork_run(sim)
        claim = httpx.post(f"{proxy.url}/claim", json=pr.claim_body())
        assert claim.status_code == 201, claim.text
        job = pr.job("claim")
        output = tmp_path / "github_output"
        client = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "issuer.cli",
                "token",
                "exchange",
                "--issuer",
                proxy.url,
                "--claim",
                claim.json()["claim_id"],
                "--timeout",
                "60",
            ],
            env=runner_env(pr, output),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            route = "/exchange"
            wait_until(
                lambda: any(in_progress(replica.metrics_url, route) for replica in pair),
                "the client's long poll to reach a replica",
            )
            holder = next(replica for replica in pair if in_progress(replica.metrics_url, route))
            survivor = next(replica for replica in pair if replica is not holder)
            sigkill(holder)
            before = len(proxy.open_to(survivor.port))
            pr.print_and_finish(job, claim.json()["challenge_line"])
            stdout, _ = client.communicate(timeout=60)
        finally:
            if client.poll() is None:
                client.kill()
        assert client.returncode == 0, stdout
        assert "could not be reached" in stdout  # the long poll died; the client retried
        assert read_outputs(output)["token"].count(".") == 2
        assert len(proxy.open_to(survivor.port)) > before  # the retry went to the other replica
