"""The single-job pattern and its halves, end to end: a live issuer, the GitHub simulator,
the client (the relay pattern is in test_relay.py)."""

from __future__ import annotations

import os
import queue
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from issuer.sim import GitHubSim
from issuer.web.serving import BackgroundServer
from tests.client.runner import assert_no_secret_leaks, read_outputs, run_step, runner_env
from tests.e2e.harness import ForkRun, issuer_in_thread

SESSION = "sim-web-session"


@pytest.fixture
def live_issuer_url(github: BackgroundServer, sim: GitHubSim) -> Iterator[str]:
    """An issuer with the opt-in web channel: the only way one job gets its own token."""
    sim.add_web_session(SESSION)
    with issuer_in_thread(github.url_of(0), github_web_session=SESSION) as (url, _config):
        yield url


def test_one_job_claim_step_then_exchange_step_through_the_live_channel(
    live_issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
    issuer_url = live_issuer_url
    job = pr.job("test")
    out = tmp_path / "out"
    sim.start_step(job, "Claim", script="issuer token claim")
    first = run_step("claim", "--issuer", issuer_url, env=runner_env(pr, out), sim=sim, job=job)
    sim.finish_step(job)
    claim = first.outputs["claim"]
    assert_no_secret_leaks(first, claim=claim)
    sim.start_step(job, "Exchange", script="issuer token exchange")
    env = runner_env(pr, out, ISSUER_CLAIM=claim, ISSUER_URL=issuer_url)
    second = run_step("exchange", "--timeout", "20", env=env, sim=sim, job=job)
    assert second.returncode == 0, second.text
    assert_no_secret_leaks(second, claim=claim, token=second.outputs["token"])


def test_one_step_token_mode_succeeds_through_the_live_channel(
    live_issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
    issuer_url = live_issuer_url
    job = pr.job("test")
    sim.start_step(job, "Token", script="issuer token")
    step = run_step(
        "--issuer",
        issuer_url,
        "--timeout",
        "20",
        env=runner_env(pr, tmp_path / "o"),
        sim=sim,
        job=job,
    )
    assert step.returncode == 0, step.text
    assert set(step.outputs) == {"token"}
    assert_no_secret_leaks(step, token=step.outputs["token"])


def test_waiting_says_which_job_it_waits_for_and_for_how_long(
    issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
    job = pr.job("claim")
    out = tmp_path / "out"
    sim.start_step(job, "Claim", script="issuer token claim")
    claim = run_step("claim", "--issuer", issuer_url, env=runner_env(pr, out), sim=sim, job=job)
    env = runner_env(pr, out, ISSUER_CLAIM=claim.outputs["claim"], ISSUER_URL=issuer_url)
    step = run_step("exchange", "--timeout", "3", env=env)
    assert step.returncode == 6
    assert "waiting for job 'claim' to finish so GitHub serves its log" in step.stdout
    assert " ... 0 s" in step.stdout or " ... 1 s" in step.stdout


def test_the_claim_step_masks_the_claim_before_writing_its_output(
    issuer_url: str, pr: ForkRun, tmp_path: Path
) -> None:
    """$GITHUB_OUTPUT is a FIFO: the client blocks opening it until this test reads it, and
    the test reads it only after the mask lines arrived. Writing first would block the
    client before it printed them."""
    fifo = tmp_path / "output"
    os.mkfifo(fifo)
    process = subprocess.Popen(
        [sys.executable, "-m", "issuer.cli", "token", "claim", "--issuer", issuer_url],
        env=runner_env(pr, fifo),
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    assert process.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read_stdout() -> None:
        for line in process.stdout or ():
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read_stdout, daemon=True).start()
    before: list[str] = []
    try:
        while not any(line.startswith("::add-mask::") for line in before):
            before.append(lines.get(timeout=30))  # raises queue.Empty if the client blocks
        written = fifo.read_text()
        process.wait(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    claim = written.splitlines()[1]
    assert process.returncode == 0
    assert f"::add-mask::{claim}" in before


def test_the_exchange_steps_header_shows_the_claim_masked(
    issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
    job = pr.job("test")
    out = tmp_path / "out"
    sim.start_step(job, "Claim")
    run_step("claim", "--issuer", issuer_url, env=runner_env(pr, out), sim=sim, job=job)
    claim = read_outputs(out)["claim"]
    sim.start_step(job, "Exchange", script="issuer token exchange", env={"ISSUER_CLAIM": claim})
    assert "  ISSUER_CLAIM: ***" in sim.job_log(job)
    assert claim not in sim.job_log(job)


def test_an_exchange_without_a_claim_says_outputs_cannot_cross_jobs_and_names_the_relay(
    pr: ForkRun, tmp_path: Path
) -> None:
    step = run_step("exchange", env=runner_env(pr, tmp_path / "o", ISSUER_CLAIM=""))
    assert step.returncode == 2
    assert "GitHub drops job outputs that hold masked values" in step.stdout
    assert "use the relay pattern (examples/two-job.yml)" in step.stdout
