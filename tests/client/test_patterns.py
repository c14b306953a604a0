"""Both workflow patterns, end to end: a live issuer, the GitHub simulator, the client."""

from __future__ import annotations

from pathlib import Path

from issuer.sim import GitHubSim
from tests.client.runner import assert_no_secret_leaks, run_step, runner_env
from tests.e2e.harness import ForkRun


def test_two_jobs_claim_then_exchange_after_the_claim_job_finished(
    issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
    claim_job = pr.job("claim")
    sim.start_step(claim_job, "Claim", script="issuer token claim")
    first = run_step(
        "claim", "--issuer", issuer_url, env=runner_env(pr, tmp_path / "a"), sim=sim, job=claim_job
    )
    sim.finish_step(claim_job)
    sim.finish_job(claim_job)
    assert first.returncode == 0, first.text
    claim = first.outputs["claim"]

    build = pr.job("build")
    sim.start_step(build, "Exchange", script="issuer token exchange")
    env = runner_env(pr, tmp_path / "b", ISSUER_CLAIM=claim)
    second = run_step("exchange", "--issuer", issuer_url, env=env, sim=sim, job=build)
    assert second.returncode == 0, second.text
    token = second.outputs["token"]
    assert token.count(".") == 2
    assert_no_secret_leaks(first, claim=claim)
    assert_no_secret_leaks(second, claim=claim, token=token)
    assert token not in sim.job_log(build)


def test_one_job_claim_step_then_exchange_step_through_the_annotation(
    issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
    sim.settings.annotation_timing = "step_end"
    job = pr.job("test")
    out = tmp_path / "out"
    sim.start_step(job, "Claim", script="issuer token claim")
    first = run_step("claim", "--issuer", issuer_url, env=runner_env(pr, out), sim=sim, job=job)
    sim.finish_step(job)
    claim = first.outputs["claim"]
    sim.start_step(job, "Exchange", script="issuer token exchange")
    env = runner_env(pr, out, ISSUER_CLAIM=claim)
    second = run_step("exchange", "--timeout", "20", env=env, sim=sim, job=job)
    assert second.returncode == 0, second.text
    assert_no_secret_leaks(second, claim=claim, token=second.outputs["token"])


def test_one_step_token_mode_succeeds_when_annotations_show_at_once(
    issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
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
    sim.settings.annotation_timing = "job_end"
    job = pr.job("claim")
    out = tmp_path / "out"
    sim.start_step(job, "Claim", script="issuer token claim")
    claim = run_step("claim", "--issuer", issuer_url, env=runner_env(pr, out), sim=sim, job=job)
    env = runner_env(pr, out, ISSUER_CLAIM=claim.outputs["claim"])
    step = run_step("exchange", "--timeout", "3", env=env)
    assert step.returncode == 6
    assert "waiting for job 'claim' to finish so GitHub serves its log" in step.stdout
    assert " ... 0 s" in step.stdout or " ... 1 s" in step.stdout
