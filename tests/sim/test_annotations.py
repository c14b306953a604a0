"""Check-run annotations: what `::notice::` and friends make, and when they become visible."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from githubkit_schemas.v2022_11_28.models import CheckAnnotation

from issuer.sim import GitHubSim, SimJob, SimRun
from tests.sim.support import UPSTREAM, links


@pytest.fixture
def job(sim: GitHubSim, fork_run: SimRun) -> SimJob:
    # These tests read what annotations say; when they become visible is tested on its own.
    sim.settings.annotation_timing = "immediate"
    job = sim.add_job(fork_run, "claim")
    sim.start_step(job, "claim", script="issuer token claim")
    return job


def listed(api: httpx.Client, job: SimJob, **params: Any) -> list[dict[str, Any]]:
    response = api.get(f"{UPSTREAM}/check-runs/{job.id}/annotations", params=params)
    assert response.status_code == 200, response.text
    body: list[dict[str, Any]] = response.json()
    return body


def messages(api: httpx.Client, job: SimJob) -> list[str]:
    return [a["message"] for a in listed(api, job)]


def test_annotations_match_githubs_schema(api: httpx.Client, sim: GitHubSim, job: SimJob) -> None:
    for line in ("::notice::n", "::warning title=W::w", "::error file=src/a.py,line=3,col=2::e"):
        sim.print_line(job, line)
    found = listed(api, job)
    for item in found:
        CheckAnnotation.model_validate(item)
    assert [a["annotation_level"] for a in found] == ["notice", "warning", "failure"]


def test_a_plain_notice_points_at_the_workflow_directory(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    sim.print_line(job, "::notice::challenge abc")
    [found] = listed(api, job)
    assert found | {"blob_href": None} == {
        "path": ".github",
        "blob_href": None,
        "start_line": 1,
        "end_line": 1,
        "start_column": None,
        "end_column": None,
        "annotation_level": "notice",
        "title": "",
        "message": "challenge abc",
        "raw_details": "",
    }


def test_properties_set_title_file_and_position(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    sim.print_line(job, "::warning title=Lint,file=src/app.py,line=7,endLine=9::long line")
    [found] = listed(api, job)
    assert (found["title"], found["path"], found["start_line"], found["end_line"]) == (
        "Lint",
        "src/app.py",
        7,
        9,
    )


def test_annotation_messages_are_masked(api: httpx.Client, sim: GitHubSim, job: SimJob) -> None:
    sim.print_line(job, "::add-mask::s3cret")
    sim.print_line(job, "::notice::token s3cret")
    assert messages(api, job) == ["token ***"]


def test_immediate_annotations_are_visible_while_the_step_runs(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    sim.settings.annotation_timing = "immediate"
    sim.print_line(job, "::notice::challenge abc")
    assert messages(api, job) == ["challenge abc"]


def test_step_end_annotations_appear_when_their_step_ends(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    sim.settings.annotation_timing = "step_end"
    sim.print_line(job, "::notice::challenge abc")
    assert messages(api, job) == []
    sim.start_step(job, "exchange", script="issuer token exchange")
    assert messages(api, job) == ["challenge abc"]


def test_annotations_appear_at_the_end_of_the_job_by_default() -> None:
    assert GitHubSim().settings.annotation_timing == "job_end"


def test_job_end_annotations_appear_only_when_the_job_ends(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    sim.settings.annotation_timing = "job_end"
    sim.print_line(job, "::notice::challenge abc")
    sim.finish_step(job)
    assert messages(api, job) == []
    sim.finish_job(job)
    assert messages(api, job) == ["challenge abc"]


def test_a_step_keeps_at_most_10_annotations_of_each_level(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    for n in range(12):
        sim.print_line(job, f"::notice::n{n}")
        sim.print_line(job, f"::warning::w{n}")
    found = messages(api, job)
    assert [m for m in found if m.startswith("n")] == [f"n{n}" for n in range(10)]
    assert len([m for m in found if m.startswith("w")]) == 10
    sim.start_step(job, "next", script="true")
    sim.print_line(job, "::notice::next step")
    assert "next step" in messages(api, job)


def test_a_job_keeps_at_most_50_annotations(api: httpx.Client, sim: GitHubSim, job: SimJob) -> None:
    for step in range(6):
        sim.start_step(job, f"step {step}", script="true")
        for n in range(10):
            sim.print_line(job, f"::notice::{step}-{n}")
    assert len(listed(api, job, per_page=100)) == 50


def test_annotations_are_paginated_with_link_headers(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    for n in range(10):
        sim.print_line(job, f"::notice::n{n}")
    first = api.get(f"{UPSTREAM}/check-runs/{job.id}/annotations", params={"per_page": 4})
    assert len(first.json()) == 4
    last = api.get(links(first)["last"])
    assert [a["message"] for a in last.json()] == ["n8", "n9"]


def test_a_check_run_of_another_repository_is_404(
    api: httpx.Client, sim: GitHubSim, job: SimJob
) -> None:
    response = api.get(f"/repos/contributor/octo-repo/check-runs/{job.id}/annotations")
    assert response.status_code == 404
