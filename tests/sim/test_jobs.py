"""Jobs of a run: the list (paginated with Link), one attempt's list, and a single job."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from githubkit_schemas.v2022_11_28.models import (
    Job,
    ReposOwnerRepoActionsRunsRunIdAttemptsAttemptNumberJobsGetResponse200,
    ReposOwnerRepoActionsRunsRunIdJobsGetResponse200,
)

from issuer.sim import GitHubSim, SimJob, SimRepo, SimRun
from tests.sim.support import UPSTREAM, links


def jobs_of(api: httpx.Client, run: SimRun, **params: Any) -> httpx.Response:
    return api.get(f"{UPSTREAM}/actions/runs/{run.id}/jobs", params=params)


def the_job(api: httpx.Client, job: SimJob) -> dict[str, Any]:
    body: dict[str, Any] = api.get(f"{UPSTREAM}/actions/jobs/{job.id}").json()
    return body


def assert_valid_lists(api: httpx.Client, run: SimRun) -> None:
    ReposOwnerRepoActionsRunsRunIdJobsGetResponse200.model_validate(jobs_of(api, run).json())
    attempt = api.get(f"{UPSTREAM}/actions/runs/{run.id}/attempts/{run.run_attempt}/jobs")
    ReposOwnerRepoActionsRunsRunIdAttemptsAttemptNumberJobsGetResponse200.model_validate(
        attempt.json()
    )


def test_job_lists_match_githubs_schema_while_queued_running_and_completed(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    job = sim.add_job(fork_run, "build")
    assert_valid_lists(api, fork_run)
    sim.start_step(job, "claim", script="issuer token claim")
    assert_valid_lists(api, fork_run)
    sim.finish_run(fork_run)
    assert_valid_lists(api, fork_run)


def test_a_job_matches_githubs_schema_while_queued_running_and_completed(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    job = sim.add_job(fork_run, "build")
    Job.model_validate(the_job(api, job))
    sim.start_step(job, "claim", script="issuer token claim")
    Job.model_validate(the_job(api, job))
    sim.finish_job(job)
    Job.model_validate(the_job(api, job))


def test_a_queued_job_has_no_runner(api: httpx.Client, sim: GitHubSim, fork_run: SimRun) -> None:
    body = the_job(api, sim.add_job(fork_run, "build"))
    assert body["status"] == "queued"
    assert body["runner_name"] is body["runner_group_name"] is body["runner_id"] is None
    assert body["steps"] == []


def test_a_started_job_runs_on_a_github_hosted_runner(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    job = sim.add_job(fork_run, "build", labels=["ubuntu-24.04"])
    sim.start_job(job)
    body = the_job(api, job)
    assert body["status"] == "in_progress"
    assert body["runner_group_name"] == "GitHub Actions"
    assert body["runner_name"].startswith("GitHub Actions ")
    assert body["labels"] == ["ubuntu-24.04"]


def test_a_self_hosted_job_names_its_runner_group(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    job = sim.add_job(fork_run, "build", labels=["self-hosted"], runner_group_name="Default")
    sim.start_job(job)
    assert the_job(api, job)["runner_group_name"] == "Default"


def test_steps_report_name_status_conclusion_and_number(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    job = sim.add_job(fork_run, "build")
    sim.start_step(job, "claim", script="issuer token claim")
    sim.start_step(job, "test", script="make test")
    sim.finish_step(job, "failure")
    steps = [
        (s["name"], s["status"], s["conclusion"], s["number"]) for s in the_job(api, job)["steps"]
    ]
    assert steps == [
        ("Set up job", "completed", "success", 1),
        ("claim", "completed", "success", 2),
        ("test", "completed", "failure", 3),
    ]


def test_a_finished_job_has_completed_at_and_a_complete_job_step(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    job = sim.add_job(fork_run, "build")
    sim.start_step(job, "claim", script="issuer token claim")
    sim.finish_job(job)
    body = the_job(api, job)
    assert (body["status"], body["conclusion"]) == ("completed", "success")
    assert body["completed_at"] is not None
    assert body["steps"][-1]["name"] == "Complete job"


def test_a_job_names_its_run_attempt_and_workflow(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    body = the_job(api, sim.add_job(fork_run, "build"))
    assert (body["run_id"], body["run_attempt"]) == (fork_run.id, 1)
    assert (body["workflow_name"], body["head_branch"]) == ("CI", "patch-1")
    assert body["head_sha"] == fork_run.head_sha


def test_a_job_asked_for_under_another_repository_is_404(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    job = sim.add_job(fork_run, "build")
    assert api.get(f"/repos/contributor/octo-repo/actions/jobs/{job.id}").status_code == 404


def test_250_jobs_are_walked_by_following_link_next(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    made = [sim.add_job(fork_run, f"shard {n}").id for n in range(250)]
    seen: list[int] = []
    response = jobs_of(api, fork_run, per_page=100)
    pages = 1
    while True:
        body = response.json()
        assert body["total_count"] == 250
        seen += [job["id"] for job in body["jobs"]]
        following = links(response).get("next")
        if following is None:
            break
        response = api.get(following)
        pages += 1
    assert (seen, pages) == (made, 3)


def test_the_first_page_links_next_and_last_as_absolute_urls_of_the_same_host(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun, upstream: SimRepo
) -> None:
    for n in range(250):
        sim.add_job(fork_run, f"shard {n}")
    found = links(jobs_of(api, fork_run, per_page=100, filter="latest"))
    origin = str(api.base_url).rstrip("/")
    base = f"{origin}/repositories/{upstream.id}/actions/runs/{fork_run.id}/jobs"
    assert found == {
        "next": f"{base}?per_page=100&filter=latest&page=2",
        "last": f"{base}?per_page=100&filter=latest&page=3",
    }


def test_a_middle_page_links_prev_next_last_and_first(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    for n in range(250):
        sim.add_job(fork_run, f"shard {n}")
    found = links(jobs_of(api, fork_run, per_page=100, page=2))
    assert list(found) == ["prev", "next", "last", "first"]
    assert found["prev"].endswith("page=1") and found["last"].endswith("page=3")


def test_the_last_page_links_back_only(api: httpx.Client, sim: GitHubSim, fork_run: SimRun) -> None:
    for n in range(40):
        sim.add_job(fork_run, f"shard {n}")
    assert list(links(jobs_of(api, fork_run, page=2))) == ["prev", "first"]


def test_pages_hold_30_jobs_unless_asked_and_never_more_than_100(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    for n in range(150):
        sim.add_job(fork_run, f"shard {n}")
    assert len(jobs_of(api, fork_run).json()["jobs"]) == 30
    assert len(jobs_of(api, fork_run, per_page=500).json()["jobs"]) == 100


def test_a_list_that_fits_one_page_has_no_link_header(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    sim.add_job(fork_run, "build")
    assert "link" not in jobs_of(api, fork_run).headers


def test_filter_latest_lists_the_latest_attempt_and_all_lists_every_attempt(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    first = sim.add_job(fork_run, "build")
    sim.finish_run(fork_run, "failure")
    sim.rerun(fork_run)
    second = sim.add_job(fork_run, "build")
    latest = [j["id"] for j in jobs_of(api, fork_run).json()["jobs"]]
    every = [j["id"] for j in jobs_of(api, fork_run, filter="all").json()["jobs"]]
    assert latest == [second.id]
    assert sorted(every) == sorted([first.id, second.id])


def test_an_attempts_job_list_keeps_that_attempts_jobs(
    api: httpx.Client, sim: GitHubSim, fork_run: SimRun
) -> None:
    first = sim.add_job(fork_run, "build")
    sim.finish_run(fork_run, "failure")
    sim.rerun(fork_run)
    sim.add_job(fork_run, "build")
    body = api.get(f"{UPSTREAM}/actions/runs/{fork_run.id}/attempts/1/jobs").json()
    assert [(j["id"], j["run_attempt"], j["conclusion"]) for j in body["jobs"]] == [
        (first.id, 1, "failure")
    ]


def test_an_unknown_filter_is_refused(api: httpx.Client, fork_run: SimRun) -> None:
    assert jobs_of(api, fork_run, filter="everything").status_code == 422


@pytest.mark.parametrize("state", ["queued", "in_progress"])
def test_jobs_cannot_be_added_to_a_completed_attempt(
    sim: GitHubSim, fork_run: SimRun, state: str
) -> None:
    if state == "in_progress":
        sim.start_job(sim.add_job(fork_run, "build"))
    sim.finish_run(fork_run)
    with pytest.raises(ValueError, match="has completed"):
        sim.add_job(fork_run, "late")
