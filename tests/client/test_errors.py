"""Every way the step can fail ends it with one ::error:: naming cause and fix, and no secret."""

from __future__ import annotations

import socket
import time
from pathlib import Path

from issuer.sim import GitHubSim
from tests.client.runner import run_step, runner_env
from tests.e2e.harness import ForkRun, fork_run, issuer_in_thread


def _claim(issuer_url: str, pr: ForkRun, out: Path) -> str:
    step = run_step("claim", "--issuer", issuer_url, env=runner_env(pr, out))
    assert step.returncode == 0, step.text
    return step.outputs["claim"]


def test_a_completed_run_is_rejected_with_exit_4_and_the_fix(
    issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
    claim = _claim(issuer_url, pr, tmp_path / "o")
    sim.finish_run(pr.run)
    env = runner_env(pr, tmp_path / "o", ISSUER_CLAIM=claim, ISSUER_URL=issuer_url)
    step = run_step("exchange", env=env)
    assert step.returncode == 4
    assert "::error" in step.stdout and "has completed" in step.stdout and "Fix:" in step.stdout
    assert claim not in step.text


def _used_claim(issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path) -> tuple[str, str]:
    """A claim exchanged once: the claim id and its token."""
    job = pr.job("claim")
    sim.start_step(job, "Claim", script="issuer token claim")
    step = run_step(
        "claim", "--issuer", issuer_url, env=runner_env(pr, tmp_path / "o"), sim=sim, job=job
    )
    sim.finish_job(job)
    claim = step.outputs["claim"]
    env = runner_env(pr, tmp_path / "x", ISSUER_CLAIM=claim, ISSUER_URL=issuer_url)
    first = run_step("exchange", "--timeout", "20", env=env)
    assert first.returncode == 0, first.text
    return claim, first.outputs["token"]


def test_exchanging_a_used_claim_again_gets_its_token_again(
    issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
    claim, token = _used_claim(issuer_url, pr, sim, tmp_path)
    env = runner_env(pr, tmp_path / "y", ISSUER_CLAIM=claim, ISSUER_URL=issuer_url)
    again = run_step("exchange", env=env)
    assert again.returncode == 0, again.text
    assert again.outputs["token"] == token


def test_a_used_claim_whose_token_expired_ends_with_exit_5(
    github_url_and_sim: tuple[str, GitHubSim], tmp_path: Path
) -> None:
    url, sim = github_url_and_sim
    pr = fork_run(sim)
    with issuer_in_thread(url, token_ttl=1) as (issuer_url, _):
        claim, _token = _used_claim(issuer_url, pr, sim, tmp_path)
        time.sleep(1.1)  # the token's lifetime
        env = runner_env(pr, tmp_path / "y", ISSUER_CLAIM=claim, ISSUER_URL=issuer_url)
        again = run_step("exchange", env=env)
    assert again.returncode == 5
    assert "claim_used" in again.stdout and "make a new claim" in again.stdout
    assert claim not in again.text


def test_an_expired_claim_ends_with_exit_5(
    github_url_and_sim: tuple[str, GitHubSim], tmp_path: Path
) -> None:
    url, sim = github_url_and_sim
    pr = fork_run(sim)
    with issuer_in_thread(url, claim_ttl=1) as (issuer_url, _):
        claim = _claim(issuer_url, pr, tmp_path / "o")
        time.sleep(1.5)
        env = runner_env(pr, tmp_path / "o", ISSUER_CLAIM=claim, ISSUER_URL=issuer_url)
        step = run_step("exchange", env=env)
    assert step.returncode == 5
    assert "claim_expired" in step.stdout and "exchange sooner" in step.stdout


def test_an_unknown_claim_ends_with_exit_5_without_echoing_it(
    issuer_url: str, pr: ForkRun, tmp_path: Path
) -> None:
    secret = "not-a-real-claim-id-but-secret-looking-012345"[:43]
    env = runner_env(pr, tmp_path / "o", ISSUER_CLAIM=secret, ISSUER_URL=issuer_url)
    step = run_step("exchange", env=env)
    assert step.returncode == 5
    assert "claim_not_found" in step.stdout and "Fix:" in step.stdout
    assert secret not in step.text


def test_an_unreachable_issuer_is_retried_then_ends_with_exit_7(
    pr: ForkRun, tmp_path: Path
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = free.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    step = run_step("--issuer", url, "--timeout", "4.5", env=runner_env(pr, tmp_path / "o"))
    assert step.returncode == 7
    assert "retrying in 1 s (try 1)" in step.stdout
    assert "retrying in 2 s (try 2)" in step.stdout
    assert "could not be reached" in step.stdout and "check `issuer-url`" in step.stdout


def test_a_line_never_seen_times_out_with_exit_6_and_the_fix(
    issuer_url: str, pr: ForkRun, tmp_path: Path
) -> None:
    pr.job("build")
    step = run_step("--issuer", issuer_url, "--timeout", "2", env=runner_env(pr, tmp_path / "o"))
    assert step.returncode == 6
    assert "timed out after 2 s" in step.stdout and "use the relay pattern" in step.stdout
