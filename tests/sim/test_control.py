"""The control API: driving the simulator over HTTP, as `issuer github-sim` is driven."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from issuer.sim import GitHubSim
from issuer.web.serving import BackgroundServer
from tests.sim.support import UPSTREAM, log_texts, read_log


@pytest.fixture
def control(server: BackgroundServer) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=f"{server.url_of(0)}/_sim", timeout=10) as client:
        yield client


def post(control: httpx.Client, path: str, body: dict[str, Any] | None = None) -> Any:
    response = control.post(path, json=body or {})
    assert response.status_code in (200, 201), response.text
    return response.json()


def test_a_fork_pull_request_run_can_be_driven_end_to_end(
    control: httpx.Client, api: httpx.Client
) -> None:
    post(control, "/repos", {"full_name": "octo-org/octo-repo", "owner_type": "Organization"})
    post(control, "/repos", {"full_name": "contributor/octo-repo", "fork_of": "octo-org/octo-repo"})
    run = post(
        control,
        "/runs",
        {"repository": "octo-org/octo-repo", "head_repository": "contributor/octo-repo"},
    )
    job = post(control, f"/runs/{run['id']}/jobs", {"name": "claim"})
    post(control, f"/jobs/{job['id']}/start")
    post(control, f"/jobs/{job['id']}/steps", {"name": "claim", "script": "issuer token claim"})
    post(control, f"/jobs/{job['id']}/print", {"text": "::notice::challenge"})
    post(control, f"/jobs/{job['id']}/finish-step")
    post(control, f"/jobs/{job['id']}/finish")
    finished = post(control, f"/runs/{run['id']}/finish", {"conclusion": "success"})
    assert (finished["status"], finished["pull_requests"]) == ("completed", [])
    assert "##[notice]challenge" in log_texts(read_log(api, job["id"]))
    rerun = post(control, f"/runs/{run['id']}/rerun")
    assert rerun["run_attempt"] == 2


def test_control_requests_stay_out_of_the_request_log(
    control: httpx.Client, sim: GitHubSim
) -> None:
    post(control, "/repos", {"full_name": "octo-org/octo-repo"})
    assert sim.request_log == []


def test_settings_can_be_read_and_changed(control: httpx.Client, sim: GitHubSim) -> None:
    response = control.put("/settings", json={"running_log": "blob_404", "finalize_seconds": 5})
    assert response.json()["running_log"] == "blob_404"
    assert (sim.settings.running_log, sim.settings.finalize_seconds) == ("blob_404", 5.0)


def test_an_invalid_setting_is_refused_and_nothing_changes(
    control: httpx.Client, sim: GitHubSim
) -> None:
    response = control.put("/settings", json={"finalize_seconds": 5, "running_log": "maybe"})
    assert response.status_code == 400
    assert sim.settings.finalize_seconds == 0


def test_tokens_and_failures_can_be_set_up(
    control: httpx.Client, api: httpx.Client, sim: GitHubSim
) -> None:
    post(control, "/repos", {"full_name": "octo-org/octo-repo"})
    post(control, "/tokens", {"token": "ghp_x", "limit": 10})
    post(control, "/fail-next", {"count": 1, "secondary": True, "retry_after": None})
    url = f"{UPSTREAM}/actions/runs/1"
    refused = api.get(url, headers={"Authorization": "Bearer ghp_x"})
    assert (refused.status_code, "retry-after" in refused.headers) == (403, False)
    answered = api.get(url, headers={"Authorization": "Bearer ghp_x"})
    assert (answered.status_code, answered.headers["x-ratelimit-limit"]) == (404, "10")
    assert control.get("/rate-limit", params={"token": "ghp_x"}).json() == {"counted": 1}


def test_unknown_ids_are_404_and_invalid_transitions_409(control: httpx.Client) -> None:
    assert control.post("/jobs/1/start").status_code == 404
    post(control, "/repos", {"full_name": "octo-org/octo-repo"})
    run = post(control, "/runs", {"repository": "octo-org/octo-repo"})
    job = post(control, f"/runs/{run['id']}/jobs", {"name": "build"})
    assert control.post(f"/jobs/{job['id']}/print", json={"text": "x"}).status_code == 409


def test_a_malformed_body_is_400(control: httpx.Client) -> None:
    assert control.post("/repos", content=b"{not json").status_code == 400
    assert control.post("/repos", json={"full_name": 7}).status_code == 400


def test_a_web_session_can_be_added(control: httpx.Client, sim: GitHubSim) -> None:
    post(control, "/web-sessions", {"cookie": "control-session"})
    assert sim.has_web_session("control-session")


@pytest.fixture
def run_id(control: httpx.Client) -> int:
    post(control, "/repos", {"full_name": "octo-org/octo-repo"})
    return int(post(control, "/runs", {"repository": "octo-org/octo-repo"})["id"])


def add_job(control: httpx.Client, run_id: int) -> int:
    return int(post(control, f"/runs/{run_id}/jobs", {"name": "claim"})["id"])


def script(control: httpx.Client, job_id: int, actions: Any) -> httpx.Response:
    return control.post(f"/jobs/{job_id}/script", json={"actions": actions})


def progress(job: dict[str, Any]) -> tuple[Any, ...]:
    """What the actions change in a job's JSON, leaving out what differs from job to job."""
    return job["status"], job["conclusion"], job["steps"], job["started_at"]


def log_of(control: httpx.Client, job: dict[str, Any]) -> list[str]:
    """The job's log lines, its runner's name (which differs from job to job) left out."""
    log = control.get(f"/jobs/{job['id']}/log").text
    return log_texts(log.replace(job["runner_name"], "<runner>"))


def test_a_script_applies_its_actions_in_order_as_the_single_routes_would(
    control: httpx.Client, run_id: int
) -> None:
    single, scripted = add_job(control, run_id), add_job(control, run_id)
    step = {"name": "Claim", "script": "issuer token claim", "env": {"ISSUER": "x"}}
    post(control, f"/jobs/{single}/start")
    post(control, f"/jobs/{single}/steps", step)
    post(control, f"/jobs/{single}/print", {"text": "::notice::challenge", "color": "green"})
    post(control, f"/jobs/{single}/steps", {"name": "Exchange"})
    last = post(control, f"/jobs/{single}/finish-step", {"conclusion": "failure"})
    response = script(
        control,
        scripted,
        [
            {"do": "start"},
            {"do": "step", **step},
            {"do": "print", "text": "::notice::challenge", "color": "green"},
            {"do": "step", "name": "Exchange"},
            {"do": "finish-step", "conclusion": "failure"},
        ],
    )
    assert response.status_code == 200, response.text
    assert progress(response.json()) == progress(last)
    assert log_of(control, response.json()) == log_of(control, last)


def test_a_script_can_finish_the_job(control: httpx.Client, run_id: int) -> None:
    job = add_job(control, run_id)
    script(control, job, [{"do": "start"}, {"do": "step", "name": "Claim"}])
    response = script(control, job, [{"do": "finish-step"}, {"do": "finish"}])
    assert response.status_code == 200, response.text
    assert (response.json()["status"], response.json()["conclusion"]) == ("completed", "success")


def test_a_bad_action_anywhere_in_a_script_applies_nothing(
    control: httpx.Client, sim: GitHubSim, run_id: int
) -> None:
    job = add_job(control, run_id)
    response = script(
        control,
        job,
        [{"do": "start"}, {"do": "step", "name": "Claim"}, {"do": "print", "color": "red"}],
    )
    assert (response.status_code, response.json()) == (
        400,
        {"error": "actions[2]: text is required"},
    )
    simjob = sim.job(job)
    assert simjob is not None
    assert (simjob.status, simjob.steps) == ("queued", [])


def test_an_unknown_action_in_a_script_is_400(control: httpx.Client, run_id: int) -> None:
    response = script(control, add_job(control, run_id), [{"do": "start"}, {"do": "dance"}])
    assert response.status_code == 400
    assert response.json()["error"].startswith("actions[1]: do must be one of start, step")


def test_an_action_that_is_not_an_object_is_400(control: httpx.Client, run_id: int) -> None:
    response = script(control, add_job(control, run_id), ["start"])
    assert (response.status_code, response.json()) == (
        400,
        {"error": "actions[0]: must be a JSON object"},
    )


@pytest.mark.parametrize("actions", [[], {"do": "start"}, "start", None])
def test_a_script_whose_actions_are_empty_or_not_a_list_is_400(
    control: httpx.Client, run_id: int, actions: Any
) -> None:
    assert script(control, add_job(control, run_id), actions).status_code == 400


def test_a_script_of_more_than_50_actions_is_400(
    control: httpx.Client, sim: GitHubSim, run_id: int
) -> None:
    job = add_job(control, run_id)
    actions = [{"do": "start"}, {"do": "step", "name": "Claim"}]
    actions += [{"do": "print", "text": f"line {i}"} for i in range(48)]
    refused = script(control, job, [*actions, {"do": "print", "text": "one too many"}])
    assert refused.status_code == 400
    assert script(control, job, actions).status_code == 200


def test_a_sim_state_error_in_a_script_is_409_and_the_actions_before_it_stay_applied(
    control: httpx.Client, run_id: int
) -> None:
    job = add_job(control, run_id)
    response = script(control, job, [{"do": "start"}, {"do": "print", "text": "no step yet"}])
    assert response.status_code == 409
    assert control.post(f"/jobs/{job}/start").status_code == 409  # already started


def test_a_script_for_an_unknown_job_is_404(control: httpx.Client) -> None:
    assert script(control, 1, [{"do": "start"}]).status_code == 404


def test_a_job_added_with_actions_has_them_applied(control: httpx.Client, run_id: int) -> None:
    body = {"name": "claim", "actions": [{"do": "start"}, {"do": "step", "name": "Claim"}]}
    job = post(control, f"/runs/{run_id}/jobs", body)
    assert job["status"] == "in_progress"
    assert [step["name"] for step in job["steps"]][-1] == "Claim"


def test_a_job_added_with_a_bad_action_is_not_added(
    control: httpx.Client, sim: GitHubSim, run_id: int
) -> None:
    body = {"name": "claim", "actions": [{"do": "start"}, {"do": "dance"}]}
    response = control.post(f"/runs/{run_id}/jobs", json=body)
    assert response.status_code == 400
    assert response.json()["error"].startswith("actions[1]: do must be one of")
    run = sim.run(run_id)
    assert run is not None and run.jobs == []


def test_a_uses_step_shows_its_action_and_inputs_in_its_header(
    control: httpx.Client, run_id: int
) -> None:
    job = add_job(control, run_id)
    body = {"name": "oidc", "action": "x/y@v1", "inputs": {"mode": "relay", "empty": ""}}
    assert script(control, job, [{"do": "start"}, {"do": "step", **body}]).status_code == 200
    log = log_texts(control.get(f"/jobs/{job}/log").text)
    assert log[-4:] == ["##[group]Run x/y@v1", "with:", "  mode: relay", "##[endgroup]"]


def test_a_step_with_both_a_script_and_an_action_is_400(control: httpx.Client, run_id: int) -> None:
    job = add_job(control, run_id)
    step = {"do": "step", "name": "s", "script": "true", "action": "x/y@v1"}
    assert script(control, job, [{"do": "start"}, step]).status_code == 400


def test_elapse_moves_the_job_runners_clock_without_waiting(
    control: httpx.Client, sim: GitHubSim, run_id: int
) -> None:
    job = add_job(control, run_id)
    actions = [
        {"do": "start"},
        {"do": "step", "name": "s", "script": "true"},
        {"do": "elapse", "seconds": 30},
        {"do": "print", "text": "later"},
    ]
    assert script(control, job, actions).status_code == 200
    [step] = [s for s in sim.job(job).steps if s.name == "s"]  # type: ignore[union-attr]
    [printed] = [e for e in sim.job(job).log if e.text == "later"]  # type: ignore[union-attr]
    assert printed.timestamp - step.started_at >= 30


def test_elapse_out_of_range_is_400(control: httpx.Client, run_id: int) -> None:
    job = add_job(control, run_id)
    assert control.post(f"/jobs/{job}/elapse", json={"seconds": -1}).status_code == 400
