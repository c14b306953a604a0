"""The web UI's live-log pages (a model: GitHub documents them nowhere, see issuer/sim/web.py)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from issuer.sim import GitHubSim, SimJob, SimRun
from issuer.web.serving import BackgroundServer
from tests.sim.support import LOG_LINE

SESSION = "sim-session-cookie-value"


@pytest.fixture
def web(server: BackgroundServer, sim: GitHubSim) -> Iterator[httpx.Client]:
    sim.add_web_session(SESSION)
    with httpx.Client(base_url=server.url_of(0), cookies={"user_session": SESSION}) as client:
        yield client


@pytest.fixture
def running(sim: GitHubSim, fork_run: SimRun) -> SimJob:
    job = sim.add_job(fork_run, "single")
    sim.start_step(job, "Claim", script="issuer token claim")
    sim.print_line(job, "::notice::fork-oidc-challenge hello")
    return job


def job_url(run: SimRun, job: SimJob) -> str:
    return f"/octo-org/octo-repo/actions/runs/{run.id}/jobs/{job.id}"


def test_the_steps_of_a_running_job_are_listed(
    web: httpx.Client, fork_run: SimRun, running: SimJob
) -> None:
    steps = web.get(f"{job_url(fork_run, running)}/steps").json()
    assert [(s["number"], s["name"], s["status"]) for s in steps] == [
        (1, "Set up job", "completed"),
        (2, "Claim", "in_progress"),
    ]


def test_a_running_step_serves_its_lines_so_far_with_timestamps(
    web: httpx.Client, fork_run: SimRun, running: SimJob
) -> None:
    lines = web.get(f"{job_url(fork_run, running)}/steps/2/backscroll").json()["lines"]
    texts = [LOG_LINE.sub("", entry["line"]) for entry in lines]
    assert all(LOG_LINE.match(entry["line"]) for entry in lines)
    assert texts[0] == "##[group]Run issuer token claim"
    assert texts[-1] == "##[notice]fork-oidc-challenge hello"


def test_each_step_serves_only_its_own_lines(
    web: httpx.Client, fork_run: SimRun, running: SimJob
) -> None:
    lines = web.get(f"{job_url(fork_run, running)}/steps/1/backscroll").json()["lines"]
    assert not any("fork-oidc-challenge" in entry["line"] for entry in lines)
    assert any("Runner name:" in entry["line"] for entry in lines)


def test_without_a_session_the_web_ui_redirects_to_the_login(
    server: BackgroundServer, fork_run: SimRun, running: SimJob
) -> None:
    response = httpx.get(f"{server.url_of(0)}{job_url(fork_run, running)}/steps")
    assert response.status_code == 302
    assert response.headers["location"].startswith("/login?return_to=")


def test_an_unknown_session_is_not_signed_in(
    server: BackgroundServer, fork_run: SimRun, running: SimJob
) -> None:
    response = httpx.get(
        f"{server.url_of(0)}{job_url(fork_run, running)}/steps",
        cookies={"user_session": "forged"},
    )
    assert response.status_code == 302


def test_a_job_of_another_run_is_not_found(
    web: httpx.Client, sim: GitHubSim, fork_run: SimRun, running: SimJob
) -> None:
    other = sim.create_run(fork_run.repository, head_repository=fork_run.head_repository)
    assert web.get(f"{job_url(other, running)}/steps").status_code == 404


def test_a_private_repository_is_not_shown(
    web: httpx.Client, sim: GitHubSim, fork_run: SimRun, running: SimJob
) -> None:
    fork_run.repository.private = True
    assert web.get(f"{job_url(fork_run, running)}/steps").status_code == 404


def test_an_unknown_step_is_not_found(web: httpx.Client, fork_run: SimRun, running: SimJob) -> None:
    assert web.get(f"{job_url(fork_run, running)}/steps/9/backscroll").status_code == 404


def test_web_requests_count_against_no_api_rate_limit(
    web: httpx.Client, sim: GitHubSim, fork_run: SimRun, running: SimJob
) -> None:
    web.get(f"{job_url(fork_run, running)}/steps")
    web.get(f"{job_url(fork_run, running)}/steps/2/backscroll")
    assert sim.counted_requests(None) == 0
