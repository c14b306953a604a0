"""The relay pattern as a runner runs it: two client processes in two parallel jobs of one
fork pull-request run, a live issuer and the GitHub simulator.

`build` runs ``issuer token --relay build`` (claims, keeps the claim, long polls); `relay`
runs ``issuer token relay --slot build`` (prints the slot's challenge line and completes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from issuer.client.workflow import RunIdentity, WorkflowClient
from issuer.sim import GitHubSim
from tests.client.runner import Step, assert_no_secret_leaks, run_step, runner_env
from tests.client.runner import step_in_background as in_background
from tests.e2e.harness import ForkRun

SLOT = "build"
CLAIM_ID = re.compile(r"(?<![A-Za-z0-9_-])[A-Za-z0-9_-]{43}(?![A-Za-z0-9_-])")  # its shape


@dataclass
class Relayed:
    relay: Step
    build: Step
    relay_log: str
    build_log: str


def _relay_url(issuer_url: str, pr: ForkRun) -> str:
    run = pr.run
    return (
        f"{issuer_url}/relay/{pr.upstream.full_name}/runs/{run.id}/attempts/{run.run_attempt}"
        f"/{SLOT}"
    )


def _stranger_claims_the_slot(issuer_url: str, pr: ForkRun) -> None:
    body = pr.claim_body(run_attempt=pr.run.run_attempt, relay=SLOT)
    assert httpx.post(f"{issuer_url}/claim", json=body).status_code == 201


def _wait_for_the_build_claim(issuer_url: str, pr: ForkRun) -> None:
    """Until the build job's claim is in the slot (the relay endpoint long polls for it)."""
    for _ in range(20):
        answer = httpx.get(_relay_url(issuer_url, pr), params={"wait": 5}, timeout=15)
        if answer.status_code == 200:
            return
        assert answer.status_code == 202, answer.text
    raise AssertionError("the build job never claimed the slot")


@pytest.fixture
def relayed(issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path) -> Relayed:
    """Both jobs of examples/two-job.yml, started together; the runner completes `relay`
    once its step exits, and the issuer reads the line in its log then."""
    relay_job, build_job = pr.job("relay"), pr.job("build")
    sim.start_step(build_job, "Fork OIDC token", script=f"issuer token --relay {SLOT}")
    sim.start_step(relay_job, "Fork OIDC relay", script=f"issuer token relay --slot {SLOT}")
    build_env = runner_env(pr, tmp_path / "build")
    with in_background(
        "--issuer", issuer_url, "--relay", SLOT, "--timeout", "60", env=build_env, sim=sim,
        job=build_job,
    ) as build:  # fmt: skip
        relay = run_step(
            "relay",
            "--issuer",
            issuer_url,
            "--slot",
            SLOT,
            "--timeout",
            "60",
            env=runner_env(pr, tmp_path / "relay"),
            sim=sim,
            job=relay_job,
        )
        sim.finish_step(relay_job, "success" if relay.returncode == 0 else "failure")
        sim.finish_job(relay_job)
        built = build.result(timeout=90)
    return Relayed(relay, built, sim.job_log(relay_job), sim.job_log(build_job))


def test_the_relay_job_prints_the_slot_claims_line_and_exits_0(relayed: Relayed) -> None:
    assert relayed.relay.returncode == 0, relayed.relay.text
    lines = relayed.relay.stdout.splitlines()
    challenge = [line for line in lines if line.startswith("::notice::fork-oidc-challenge ")]
    assert len(challenge) == 1
    assert "##[notice]" + challenge[0].removeprefix("::notice::") in relayed.relay_log


def test_the_build_job_gets_its_token_once_the_relay_job_completed(relayed: Relayed) -> None:
    assert relayed.build.returncode == 0, relayed.build.text
    assert relayed.build.outputs["token"].count(".") == 2


def test_the_build_job_prints_neither_the_challenge_nor_the_claim(relayed: Relayed) -> None:
    code = next(
        line.split()[-1]
        for line in relayed.relay.stdout.splitlines()
        if line.startswith("::notice::fork-oidc-challenge ")
    )
    assert code not in relayed.build.text and code not in relayed.build_log
    printed = [
        line
        for line in (relayed.build.text + relayed.relay.text).splitlines()
        if not line.startswith("::add-mask::")  # the token's: consumed by the runner
    ]
    assert not any("/exchange/" in line or CLAIM_ID.search(line) for line in printed)
    assert set(relayed.build.outputs) == {"token"}


def test_the_token_shows_only_in_its_mask_line(relayed: Relayed) -> None:
    token = relayed.build.outputs["token"]
    assert_no_secret_leaks(relayed.build, token=token)
    assert token not in relayed.relay.text + relayed.build_log + relayed.relay_log


def test_the_relay_job_says_it_waits_for_the_exchanging_job(
    issuer_url: str, pr: ForkRun, tmp_path: Path
) -> None:
    step = run_step(
        "relay", "--issuer", issuer_url, "--slot", SLOT, "--timeout", "2",
        env=runner_env(pr, tmp_path / "o"),
    )  # fmt: skip
    assert step.returncode == 6
    assert f"waiting for the exchanging job to claim relay slot '{SLOT}'" in step.stdout
    assert f"`issuer token --relay {SLOT}`" in step.stdout  # the fix names the other half


def test_a_contested_slot_fails_the_build_step_with_exit_4_naming_cause_and_fix(
    issuer_url: str, pr: ForkRun, sim: GitHubSim, tmp_path: Path
) -> None:
    build_job = pr.job("build")
    sim.start_step(build_job, "Fork OIDC token", script=f"issuer token --relay {SLOT}")
    env = runner_env(pr, tmp_path / "build")
    args = ("--issuer", issuer_url, "--relay", SLOT, "--timeout", "60")
    with in_background(*args, env=env, sim=sim, job=build_job) as build:
        _wait_for_the_build_claim(issuer_url, pr)
        _stranger_claims_the_slot(issuer_url, pr)
        step = build.result(timeout=90)
    assert step.returncode == 4, step.text
    assert "::error" in step.stdout and "was claimed more than once" in step.stdout
    assert "Fix: someone else claimed this run's relay slot" in step.stdout
    assert "Re-run the workflow" in step.stdout
    assert step.outputs == {}


def test_a_contested_slot_fails_the_relay_step_with_exit_4_naming_cause_and_fix(
    issuer_url: str, pr: ForkRun, tmp_path: Path
) -> None:
    _stranger_claims_the_slot(issuer_url, pr)
    _stranger_claims_the_slot(issuer_url, pr)
    step = run_step(
        "relay", "--issuer", issuer_url, "--slot", SLOT, env=runner_env(pr, tmp_path / "o")
    )
    assert step.returncode == 4, step.text
    assert "(relay_contested)" in step.stdout and "was claimed more than once" in step.stdout
    assert "Re-run the workflow" in step.stdout
    assert "fork-oidc-challenge" not in step.stdout


def test_a_relay_slot_with_mode_claim_is_a_usage_error(
    issuer_url: str, pr: ForkRun, tmp_path: Path
) -> None:
    env = runner_env(pr, tmp_path / "o", ISSUER_RELAY_SLOT=SLOT)
    step = run_step("claim", "--issuer", issuer_url, env=env)
    assert step.returncode == 2
    assert "mode `token`" in step.stdout and "mode `relay`" in step.stdout


def test_the_relay_mode_without_a_slot_is_a_usage_error(
    issuer_url: str, pr: ForkRun, tmp_path: Path
) -> None:
    step = run_step("relay", "--issuer", issuer_url, env=runner_env(pr, tmp_path / "o"))
    assert step.returncode == 2
    assert "--slot" in step.stdout


def test_a_malformed_slot_is_a_usage_error_before_any_request(pr: ForkRun, tmp_path: Path) -> None:
    step = run_step(
        "--issuer", "http://127.0.0.1:9", "--relay", "no/slashes",
        env=runner_env(pr, tmp_path / "o"),
    )  # fmt: skip
    assert step.returncode == 2
    assert "relay slot must be 1 to 64 characters" in step.stdout


class _LosesFirstClaimAnswer(httpx.BaseTransport):
    """Sends every request to the issuer; the answer to the first ``POST /claim`` is lost on
    the way back (the claim was made), as a connection closed under it would lose it."""

    def __init__(self) -> None:
        self._real = httpx.HTTPTransport()
        self.claim_keys: list[str] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self._real.handle_request(request)
        if request.method == "POST" and request.url.path == "/claim":
            self.claim_keys.append(request.headers.get("idempotency-key", ""))
            if len(self.claim_keys) == 1:
                response.read()
                response.close()
                raise httpx.ReadError("connection closed before the answer arrived")
        return response


def test_a_relay_claim_retried_after_its_answer_was_lost_does_not_contest_its_slot(
    issuer_url: str, pr: ForkRun
) -> None:
    transport = _LosesFirstClaimAnswer()
    said: list[str] = []
    client = WorkflowClient(
        issuer_url, say=said.append, http=httpx.Client(transport=transport), sleep=lambda _: None
    )
    run = RunIdentity(
        pr.upstream.full_name, str(pr.run.id), str(pr.run.run_attempt), "pull_request"
    )
    client.claim(run, None, relay=SLOT)
    assert len(transport.claim_keys) == 2 and any("could not be reached" in s for s in said)
    assert transport.claim_keys[0] and transport.claim_keys[0] == transport.claim_keys[1]
    relayed = httpx.get(_relay_url(issuer_url, pr), timeout=10)
    assert relayed.status_code == 200, relayed.text  # one claim on the slot, not two
