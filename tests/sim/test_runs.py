"""GET .../actions/runs/{id} and .../attempts/{n}: the run as GitHub shows it."""

from __future__ import annotations

import httpx
import pytest
from githubkit_schemas.v2022_11_28.models import WorkflowRun

from issuer.sim import GitHubSim, SimRepo, SimRun
from tests.sim.support import UPSTREAM


def get_run(api: httpx.Client, run: SimRun, suffix: str = "") -> httpx.Response:
    return api.get(f"{UPSTREAM}/actions/runs/{run.id}{suffix}")


def test_a_queued_run_matches_githubs_schema(api: httpx.Client, fork_run: SimRun) -> None:
    body = get_run(api, fork_run).json()
    WorkflowRun.model_validate(body)
    assert (body["status"], body["conclusion"], body["run_attempt"]) == ("queued", None, 1)


def test_a_run_is_in_progress_once_a_job_starts(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    sim.start_job(sim.add_job(fork_run, "build"))
    body = get_run(api, fork_run).json()
    WorkflowRun.model_validate(body)
    assert (body["status"], body["conclusion"]) == ("in_progress", None)


def test_a_completed_run_matches_githubs_schema_with_its_conclusion(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    sim.start_job(sim.add_job(fork_run, "build"))
    sim.finish_run(fork_run, "failure")
    body = get_run(api, fork_run).json()
    WorkflowRun.model_validate(body)
    assert (body["status"], body["conclusion"]) == ("completed", "failure")


def test_a_run_does_not_complete_when_its_jobs_do(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    job = sim.add_job(fork_run, "claim")
    sim.start_job(job)
    sim.finish_job(job)
    assert get_run(api, fork_run).json()["status"] == "in_progress"


def test_a_run_from_a_fork_lists_no_pull_requests(api: httpx.Client, fork_run: SimRun) -> None:
    body = get_run(api, fork_run).json()
    assert body["pull_requests"] == []
    assert body["repository"]["full_name"] == "octo-org/octo-repo"
    assert body["head_repository"]["full_name"] == "contributor/octo-repo"
    assert body["head_repository"]["fork"] is True


def test_a_same_repository_pull_request_run_lists_its_pull_request(
    api: httpx.Client, sim: GitHubSim, upstream: SimRepo
) -> None:
    run = sim.create_run(upstream, head_branch="feature", base_branch="main")
    [pull] = get_run(api, run).json()["pull_requests"]
    assert (pull["number"], pull["head"]["ref"], pull["base"]["ref"]) == (1, "feature", "main")
    assert pull["head"]["repo"]["id"] == upstream.id


def test_a_run_carries_the_ids_the_token_claims_come_from(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun, upstream: SimRepo, fork: SimRepo
) -> None:
    body = get_run(api, fork_run).json()
    assert body["id"] == fork_run.id
    assert body["event"] == "pull_request"
    assert body["repository"]["id"] == upstream.id
    assert body["repository"]["owner"] == body["repository"]["owner"] | {
        "login": "octo-org",
        "id": upstream.owner_id,
        "type": "Organization",
    }
    assert body["head_repository"]["owner"]["id"] == fork.owner_id
    assert body["actor"]["login"] == body["triggering_actor"]["login"] == "contributor"
    assert body["actor"]["id"] == sim.user("contributor").id
    assert body["head_sha"] == fork_run.head_sha and len(fork_run.head_sha) == 40


def test_ids_are_distinct_across_kinds(sim: GitHubSim, fork_run: SimRun, upstream: SimRepo) -> None:
    job = sim.add_job(fork_run, "build")
    ids = [upstream.id, upstream.owner_id, fork_run.id, job.id, fork_run.actor.id]
    assert len(set(ids)) == len(ids)


def test_run_numbers_count_up_per_repository(
    sim: GitHubSim, upstream: SimRepo, fork: SimRepo
) -> None:
    first = sim.create_run(upstream, head_repository=fork)
    second = sim.create_run(upstream, head_repository=fork)
    elsewhere = sim.create_run(fork, event="push")
    assert (first.run_number, second.run_number, elsewhere.run_number) == (1, 2, 1)
    assert second.id != first.id


def test_an_unknown_run_is_404_with_githubs_error_body(
    api: httpx.Client, upstream: SimRepo
) -> None:
    response = api.get(f"{UPSTREAM}/actions/runs/42")
    assert response.status_code == 404
    assert response.json() == {
        "message": "Not Found",
        "documentation_url": "https://docs.github.com/rest/actions/workflow-runs#get-a-workflow-run",
        "status": "404",
    }


def test_a_run_asked_for_under_another_repository_is_404(
    api: httpx.Client, fork_run: SimRun
) -> None:
    assert api.get(f"/repos/contributor/octo-repo/actions/runs/{fork_run.id}").status_code == 404


def test_a_run_in_a_private_repository_is_404_even_with_a_token(
    api: httpx.Client, sim: GitHubSim
) -> None:
    private = sim.add_repository("octo-org/secret", private=True)
    run = sim.create_run(private)
    sim.add_token("ghp_reader")
    response = api.get(
        f"/repos/octo-org/secret/actions/runs/{run.id}",
        headers={"Authorization": "Bearer ghp_reader"},
    )
    assert response.status_code == 404


def test_a_token_with_access_sees_a_private_run(api: httpx.Client, sim: GitHubSim) -> None:
    private = sim.add_repository("octo-org/secret", private=True)
    run = sim.create_run(private)
    sim.add_token("ghp_member", sees_private=True)
    response = api.get(
        f"/repos/octo-org/secret/actions/runs/{run.id}",
        headers={"Authorization": "token ghp_member"},
    )
    assert response.json()["repository"]["private"] is True


def test_owner_and_repository_names_ignore_case(api: httpx.Client, fork_run: SimRun) -> None:
    assert api.get(f"/repos/Octo-Org/OCTO-repo/actions/runs/{fork_run.id}").status_code == 200


def test_the_plain_url_shows_the_latest_attempt(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    sim.finish_run(fork_run, "failure")
    sim.rerun(fork_run, actor="maintainer")
    body = get_run(api, fork_run).json()
    WorkflowRun.model_validate(body)
    assert (body["run_attempt"], body["status"], body["conclusion"]) == (2, "queued", None)
    assert body["triggering_actor"]["login"] == "maintainer"
    assert body["actor"]["login"] == "contributor"
    assert body["previous_attempt_url"].endswith(f"/actions/runs/{fork_run.id}/attempts/1")


def test_an_earlier_attempt_stays_readable_as_it_ended(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    sim.finish_run(fork_run, "failure")
    sim.rerun(fork_run)
    body = get_run(api, fork_run, "/attempts/1").json()
    WorkflowRun.model_validate(body)
    assert (body["run_attempt"], body["status"], body["conclusion"]) == (1, "completed", "failure")


@pytest.mark.parametrize("attempt", [0, 2])
def test_an_attempt_that_does_not_exist_is_404(
    api: httpx.Client, fork_run: SimRun, attempt: int
) -> None:
    assert get_run(api, fork_run, f"/attempts/{attempt}").status_code == 404


def test_only_a_completed_run_can_be_rerun(sim: GitHubSim, fork_run: SimRun) -> None:
    with pytest.raises(ValueError, match="only completed runs"):
        sim.rerun(fork_run)


def test_the_repositories_by_id_form_serves_the_same_run(
    api: httpx.Client, fork_run: SimRun, upstream: SimRepo
) -> None:
    by_id = api.get(f"/repositories/{upstream.id}/actions/runs/{fork_run.id}").json()
    assert by_id == get_run(api, fork_run).json()
