"""``issuer token`` run exactly as a runner would: environment, $GITHUB_OUTPUT, public stdout."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from issuer.sim import GitHubSim
from tests.client.runner import read_outputs as outputs
from tests.client.runner import runner_env
from tests.e2e.harness import ForkRun


def issuer_token(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "issuer.cli", "token", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_the_two_job_pattern_yields_a_masked_token_and_never_prints_the_claim(
    issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
    claim_out, build_out = tmp_path / "claim-job", tmp_path / "build-job"
    claim_job = pr.job("claim")
    sim.start_step(claim_job, "Claim", script="issuer token claim")
    first = issuer_token("claim", "--issuer", issuer_url, env=runner_env(pr, claim_out))
    assert first.returncode == 0, first.stdout + first.stderr
    for line in first.stdout.splitlines():
        sim.print_line(claim_job, line)
    sim.finish_step(claim_job)
    sim.finish_job(claim_job)
    claim = outputs(claim_out)["claim"]
    assert re.fullmatch(r"[A-Za-z0-9_-]{43}", claim)  # the claim id alone: no URL
    # Only in the mask line, which the runner consumes without logging it.
    assert all(
        line.startswith("::add-mask::")
        for line in (first.stdout + first.stderr).splitlines()
        if claim in line
    )

    pr.job("build")
    env = runner_env(pr, build_out, ISSUER_CLAIM=claim, ISSUER_URL=issuer_url)
    second = issuer_token("exchange", env=env)
    assert second.returncode == 0, second.stdout + second.stderr
    token = outputs(build_out)["token"]
    lines = second.stdout.splitlines()
    mask = lines.index(f"::add-mask::{token}")
    assert all(token not in line for line in lines[:mask] + lines[mask + 1 :])
    assert claim not in second.stdout + second.stderr


def test_a_push_run_ends_the_step_with_the_cause_and_exit_code_4(
    issuer_url: str, sim: GitHubSim, tmp_path: Path
) -> None:
    from tests.e2e.harness import fork_run

    push = fork_run(sim, event="push")
    push.job("build")
    env = runner_env(push, tmp_path / "out", GITHUB_EVENT_NAME="pull_request")
    result = issuer_token("--issuer", issuer_url, "--timeout", "20", env=env)
    assert result.returncode == 4
    assert "triggered by push" in result.stdout


def test_a_claim_from_a_push_workflow_is_refused_with_exit_code_3(
    issuer_url: str, pr: ForkRun, tmp_path: Path
) -> None:
    env = runner_env(pr, tmp_path / "out", GITHUB_EVENT_NAME="push")
    result = issuer_token("--issuer", issuer_url, env=env)
    assert result.returncode == 3
    assert "pull_request" in result.stdout


def test_outside_a_job_the_client_says_which_variables_are_missing(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("GITHUB_")}
    result = issuer_token("--issuer", "http://127.0.0.1:9", env=env)
    assert result.returncode == 2
    assert "GITHUB_REPOSITORY" in result.stdout
