"""One watcher per run: claims on a run share its looks, and what was read is not read again."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx

from issuer.sim import GitHubSim
from tests.e2e.harness import GITHUB_TOKEN, ForkRun, bearer


def _claim(http: httpx.Client, issuer_url: str, pr: ForkRun) -> dict[str, Any]:
    response = http.post(f"{issuer_url}/claim", json=pr.claim_body())
    assert response.status_code == 201, response.text
    return dict(response.json())


async def _exchange_all(claims: list[dict[str, Any]], wait: int = 15) -> list[httpx.Response]:
    async with httpx.AsyncClient(timeout=40) as http:
        return await asyncio.gather(
            *(
                http.post(
                    claim["exchange_url"],
                    params={"wait": str(wait)},
                    headers=bearer(claim),
                )
                for claim in claims
            )
        )


def _requests_to(sim: GitHubSim, suffix: str) -> int:
    with sim.lock:
        return sum(1 for _method, path, _status, _auth in sim.request_log if path.endswith(suffix))


def test_a_completed_jobs_log_is_downloaded_once_for_every_claim_it_shows(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claims = [_claim(http, issuer_url, pr) for _ in range(5)]
    job = pr.job("claim")
    sim.start_step(job, "Claim", script="issuer token claim")
    for claim in claims:
        sim.print_line(job, claim["challenge_line"])
    sim.finish_step(job)
    sim.finish_job(job)
    responses = asyncio.run(_exchange_all(claims))
    assert [r.status_code for r in responses] == [200] * 5
    assert _requests_to(sim, f"/jobs/{job.id}/logs") == 1


def test_claims_on_one_run_cost_the_requests_of_one(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claims = [_claim(http, issuer_url, pr) for _ in range(20)]
    job = pr.job("claim")
    sim.start_step(job, "Claim", script="issuer token claim")
    for claim in claims:
        sim.print_line(job, claim["challenge_line"])
    sim.finish_step(job)
    sim.finish_job(job)
    responses = asyncio.run(_exchange_all(claims))
    assert [r.status_code for r in responses] == [200] * 20
    # the run, its jobs, one log (and a reread or two of a changed list): not 20 of each
    assert sim.counted_requests(GITHUB_TOKEN) <= 6


def test_a_job_whose_own_steps_have_not_finished_has_no_annotations_read(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = _claim(http, issuer_url, pr)
    job = pr.job("build")  # started: only the runner's "Set up job" has finished
    response = http.post(
        claim["exchange_url"],
        params={"wait": "1"},
        headers=bearer(claim),
        timeout=10,
    )
    assert response.status_code == 202
    assert _requests_to(sim, f"/check-runs/{job.id}/annotations") == 0


def test_a_notice_is_read_once_its_step_finishes_while_the_job_goes_on(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = _claim(http, issuer_url, pr)
    job = pr.job("test")
    sim.start_step(job, "Claim", script="issuer token claim")
    sim.print_line(job, claim["challenge_line"])
    sim.finish_step(job)
    sim.start_step(job, "Exchange", script="issuer token exchange")
    response = http.post(
        claim["exchange_url"],
        params={"wait": "10"},
        headers=bearer(claim),
        timeout=20,
    )
    assert response.status_code == 200, response.text
    assert _requests_to(sim, f"/check-runs/{job.id}/annotations") == 1


def test_a_claim_made_and_exchanged_in_one_step_is_seen_through_its_annotation(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = _claim(http, issuer_url, pr)
    job = pr.job("test")
    sim.start_step(job, "Token", script="issuer token")
    sim.print_line(job, claim["challenge_line"])  # annotations appear at once (the default)
    response = http.post(
        claim["exchange_url"],
        params={"wait": "15"},
        headers=bearer(claim),
        timeout=25,
    )
    assert response.status_code == 200, response.text


def test_the_watch_stops_asking_github_once_every_claim_was_seen(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = _claim(http, issuer_url, pr)
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    assert (
        http.post(
            claim["exchange_url"],
            params={"wait": "10"},
            headers=bearer(claim),
            timeout=20,
        ).status_code
        == 200
    )
    with sim.lock:
        before = len(sim.request_log)
    asyncio.run(asyncio.sleep(2.5))
    with sim.lock:
        assert len(sim.request_log) == before
