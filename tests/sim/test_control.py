"""The control API: driving the simulator over HTTP, as `issuer github-sim` is driven."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from issuer.serving import BackgroundServer
from issuer.sim import GitHubSim
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
