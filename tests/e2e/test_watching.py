"""One watcher per run: claims on a run share its looks, and what was read is not read again."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx
import pytest
import redis

from issuer.oidc.challenge import challenge_line, new_code
from issuer.sim import GitHubSim
from issuer.store import RedisStore, tagged
from issuer.web.serving import BackgroundServer
from tests.e2e.harness import GITHUB_TOKEN, ForkRun, bearer, issuer_in_thread


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
    pr.client_step(job, *(claim["challenge_line"] for claim in claims))
    sim.finish_job(job)
    responses = asyncio.run(_exchange_all(claims))
    assert [r.status_code for r in responses] == [200] * 5
    assert _requests_to(sim, f"/jobs/{job.id}/logs") == 1


def test_claims_on_one_run_cost_the_requests_of_one(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claims = [_claim(http, issuer_url, pr) for _ in range(20)]
    job = pr.job("claim")
    pr.client_step(job, *(claim["challenge_line"] for claim in claims))
    sim.finish_job(job)
    responses = asyncio.run(_exchange_all(claims))
    assert [r.status_code for r in responses] == [200] * 20
    # the run, its jobs, one log (and a reread or two of a changed list): not 20 of each
    assert sim.counted_requests(GITHUB_TOKEN) <= 6


def test_annotations_are_never_read_even_when_github_shows_them_at_once(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    """They cannot be tied to the step that made them: not proof, so not worth a request."""
    sim.settings.annotation_timing = "immediate"
    claim = _claim(http, issuer_url, pr)
    job = pr.job("test")
    sim.start_step(job, "Token", script="issuer token")
    sim.elapse(job, 2.0)
    sim.print_line(job, claim["challenge_line"])
    sim.finish_step(job)
    sim.start_step(job, "Test", script="npm test")
    response = http.post(
        claim["exchange_url"], params={"wait": "2"}, headers=bearer(claim), timeout=10
    )
    assert response.status_code == 202
    assert _requests_to(sim, f"/check-runs/{job.id}/annotations") == 0


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


def test_a_log_over_the_size_cap_leaves_the_claim_pending_saying_why(
    http: httpx.Client,
    issuer_url: str,
    pr: ForkRun,
    sim: GitHubSim,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A 64 MiB log: read up to the cap (32 MiB) and no further, nothing of it counts, the
    exchange says so, and the issuer's log has a line about it; never a hang."""
    caplog.set_level(logging.WARNING, logger="issuer.github.client")
    claim = _claim(http, issuer_url, pr)
    job = pr.job("big")
    pr.client_step(job, claim["challenge_line"], *("x" * 1024 * 1024 for _ in range(64)))
    sim.finish_job(job)
    response = http.post(
        claim["exchange_url"], params={"wait": "3"}, headers=bearer(claim), timeout=20
    )
    assert response.status_code == 202
    assert "not read, their logs being over 32 MiB: big" in response.json()["error_description"]
    assert f"job {job.id}: its log is over 33554432 bytes; not scanned" in caplog.text


def test_ten_thousand_code_shaped_strings_leave_the_claims_token_on_its_way(
    http: httpx.Client, github: BackgroundServer, redis_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    """The client's step prints 10,000 lines shaped like challenges (of no claim) beside the
    claim's own, on an issuer over Redis: only the pending claim's code is recorded, and it
    gets its token."""
    store = RedisStore.from_url(redis_url)
    with issuer_in_thread(github.url_of(0), store=store) as (url, _config):
        claim = _claim(http, url, pr)
        job = pr.job("relay")
        spam = (challenge_line(new_code()) for _ in range(10_000))
        pr.client_step(job, *spam, claim["challenge_line"])
        sim.finish_job(job)
        response = http.post(
            claim["exchange_url"], params={"wait": "15"}, headers=bearer(claim), timeout=25
        )
        assert response.status_code == 200, response.text
    raw = redis.Redis.from_url(redis_url)
    sightings = raw.hkeys(tagged(f"run:{pr.upstream.full_name.lower()}:{pr.run.id}:0", "sightings"))
    raw.close()
    assert set(sightings) == {b"~memo", claim["challenge_code"].encode()}
