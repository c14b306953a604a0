"""GitHub's secondary rate limit: points per rolling minute and requests in flight, per caller.

Every test here draws refusals on purpose, hence the module's marker.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from issuer.sim import GitHubSim, SimRun, create_sim_app
from issuer.web.serving import BackgroundServer
from tests.sim.support import GITHUB_HEADERS, UPSTREAM, FakeClock

pytestmark = pytest.mark.provokes_secondary_limit

TOKEN = {"Authorization": "Bearer ghp_a"}


@pytest.fixture
def run_url(sim: GitHubSim, fork_run: SimRun) -> str:
    sim.add_token("ghp_a")
    return f"{UPSTREAM}/actions/runs/{fork_run.id}"


def spend(api: httpx.Client, url: str, count: int, headers: dict[str, str] = TOKEN) -> None:
    for _ in range(count):
        assert api.get(url, headers=headers).status_code == 200


def is_secondary_refusal(response: httpx.Response) -> bool:
    return response.status_code in (403, 429) and (
        "You have exceeded a secondary rate limit" in response.json()["message"]
    )


# -- what a request costs --------------------------------------------------------------------


def test_a_get_costs_one_point(api: httpx.Client, sim: GitHubSim, run_url: str) -> None:
    api.get(run_url, headers=TOKEN)
    assert sim.secondary_usage("ghp_a").points == 1


def test_a_304_costs_one_point(api: httpx.Client, sim: GitHubSim, run_url: str) -> None:
    etag = api.get(run_url, headers=TOKEN).headers["etag"]
    again = api.get(run_url, headers=TOKEN | {"If-None-Match": etag})
    assert again.status_code == 304
    assert sim.secondary_usage("ghp_a").points == 2


def test_a_post_costs_five_points(api: httpx.Client, sim: GitHubSim, run_url: str) -> None:
    api.post(f"{UPSTREAM}/issues", headers=TOKEN, json={"title": "hello"})
    assert sim.secondary_usage("ghp_a").points == 5


def test_a_log_download_costs_nothing(api: httpx.Client, sim: GitHubSim, fork_run: SimRun) -> None:
    sim.add_token("ghp_a")
    job = sim.add_job(fork_run, "build")
    sim.start_job(job)
    sim.finish_job(job)
    redirect = api.get(f"{UPSTREAM}/actions/jobs/{job.id}/logs", headers=TOKEN)
    assert httpx.get(redirect.headers["location"], headers={"User-Agent": "t"}).status_code == 200
    assert sim.secondary_usage("ghp_a").points == 1


# -- over the limit --------------------------------------------------------------------------


def test_the_901st_point_in_a_minute_is_refused_with_the_message_and_retry_after(
    api: httpx.Client, sim: GitHubSim, clock: FakeClock, run_url: str
) -> None:
    spend(api, run_url, 600)
    clock.advance(20)
    spend(api, run_url, 300)
    refused = api.get(run_url, headers=TOKEN)
    assert is_secondary_refusal(refused)
    assert refused.status_code == 403
    # The first 600 points leave the window 40 s from now.
    assert refused.headers["retry-after"] == "40"
    assert refused.headers["x-ratelimit-remaining"] == str(5000 - 900)


def test_a_write_that_would_pass_the_limit_is_refused(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.settings.secondary_points_per_minute = 8
    spend(api, run_url, 4)
    assert is_secondary_refusal(api.post(f"{UPSTREAM}/issues", headers=TOKEN))
    assert api.get(run_url, headers=TOKEN).status_code == 200


def test_the_refusal_can_be_429(api: httpx.Client, sim: GitHubSim, run_url: str) -> None:
    sim.settings.secondary_points_per_minute = 1
    sim.settings.rate_limit_status = 429
    spend(api, run_url, 1)
    refused = api.get(run_url, headers=TOKEN)
    assert (refused.status_code, is_secondary_refusal(refused)) == (429, True)


def test_points_leave_the_window_after_60_seconds(
    api: httpx.Client, sim: GitHubSim, clock: FakeClock, run_url: str
) -> None:
    sim.settings.secondary_points_per_minute = 3
    spend(api, run_url, 3)
    clock.advance(59)
    assert is_secondary_refusal(api.get(run_url, headers=TOKEN))
    clock.advance(1)
    spend(api, run_url, 3)


def test_a_refused_request_adds_no_points(
    api: httpx.Client, sim: GitHubSim, clock: FakeClock, run_url: str
) -> None:
    sim.settings.secondary_points_per_minute = 2
    spend(api, run_url, 2)
    for _ in range(5):
        assert is_secondary_refusal(api.get(run_url, headers=TOKEN))
    clock.advance(60)
    spend(api, run_url, 2)
    assert sim.secondary_usage("ghp_a").points == 4


def test_buckets_are_independent(api: httpx.Client, sim: GitHubSim, run_url: str) -> None:
    sim.settings.secondary_points_per_minute = 2
    sim.add_token("ghp_b")
    spend(api, run_url, 2)
    assert is_secondary_refusal(api.get(run_url, headers=TOKEN))
    spend(api, run_url, 2, {"Authorization": "Bearer ghp_b"})
    spend(api, run_url, 2, {})  # the anonymous caller's bucket


def test_zero_points_per_minute_turns_the_limit_off(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.settings.secondary_points_per_minute = 0
    spend(api, run_url, 905)
    assert sim.secondary_usage("ghp_a").points == 905
    assert sim.secondary_refusals() == 0


# -- retry-after -----------------------------------------------------------------------------


@pytest.mark.parametrize(("mode", "header"), [("seconds", "60"), ("blank", ""), ("absent", None)])
def test_retry_after_is_seconds_blank_or_absent_as_set(
    api: httpx.Client, sim: GitHubSim, run_url: str, mode: str, header: str | None
) -> None:
    sim.settings.update({"secondary_points_per_minute": 1, "secondary_retry_after": mode})
    spend(api, run_url, 1)
    refused = api.get(run_url, headers=TOKEN)
    assert is_secondary_refusal(refused)
    assert refused.headers.get("retry-after") == header


def test_mixed_retry_after_takes_each_form_in_turn(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.settings.update({"secondary_points_per_minute": 1, "secondary_retry_after": "mixed"})
    spend(api, run_url, 1)
    headers = [api.get(run_url, headers=TOKEN).headers.get("retry-after") for _ in range(4)]
    assert headers == ["60", "", None, "60"]


# -- requests in flight ----------------------------------------------------------------------


async def in_flight_at_once(sim: GitHubSim, url: str, count: int) -> list[httpx.Response]:
    """Send `count` requests that all stay in flight (the latency is an hour) and answer those
    that were answered once the rest are all in flight; then cancel those."""
    sim.settings.latency = 3600
    transport = httpx.ASGITransport(app=create_sim_app(sim))
    async with httpx.AsyncClient(
        transport=transport, base_url="http://api.test", headers=GITHUB_HEADERS | TOKEN
    ) as client:
        sent = [asyncio.create_task(client.get(url)) for _ in range(count)]
        while True:  # every request answered or in the simulator's own count
            if sum(t.done() for t in sent) + sim.requests_in_flight("ghp_a") == count:
                break
            await asyncio.sleep(0)
        answered = [t.result() for t in sent if t.done()]
        for task in sent:
            task.cancel()
        await asyncio.gather(*sent, return_exceptions=True)
    assert sim.requests_in_flight("ghp_a") == 0
    return answered


async def test_the_101st_request_in_flight_is_refused(sim: GitHubSim, run_url: str) -> None:
    [refused] = await in_flight_at_once(sim, run_url, 101)
    assert is_secondary_refusal(refused)
    assert refused.headers["retry-after"] == "1"
    assert sim.secondary_usage("ghp_a").refusals == 1


async def test_zero_concurrency_turns_the_cap_off(sim: GitHubSim, run_url: str) -> None:
    sim.settings.secondary_concurrency = 0
    assert await in_flight_at_once(sim, run_url, 101) == []
    assert sim.secondary_refusals() == 0


# -- what the simulator reports --------------------------------------------------------------


def test_refusals_and_peak_points_per_minute_are_reported(
    api: httpx.Client, sim: GitHubSim, clock: FakeClock, run_url: str
) -> None:
    sim.settings.secondary_points_per_minute = 10
    spend(api, run_url, 4)
    clock.advance(30)
    spend(api, run_url, 6)
    api.get(run_url, headers=TOKEN)
    clock.advance(31)
    spend(api, run_url, 2)
    usage = sim.secondary_usage("ghp_a")
    assert (usage.points, usage.peak_points_per_minute, usage.refusals) == (12, 10, 1)
    assert sim.secondary_refusals() == 1


def test_injected_secondary_refusals_are_counted_apart(
    api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    sim.fail_next(2, secondary=True)
    api.get(run_url, headers=TOKEN)
    api.get(run_url, headers=TOKEN)
    assert (sim.secondary_refusals(), sim.injected_secondary_refusals()) == (0, 2)


def test_the_control_api_reports_and_sets_the_limit(
    server: BackgroundServer, api: httpx.Client, sim: GitHubSim, run_url: str
) -> None:
    with httpx.Client(base_url=f"{server.url_of(0)}/_sim", timeout=10) as control:
        changed = control.put("/settings", json={"secondary_points_per_minute": 1})
        assert changed.json()["secondary_points_per_minute"] == 1
        spend(api, run_url, 1)
        api.get(run_url, headers=TOKEN)
        one = control.get("/secondary-limit", params={"token": "ghp_a"}).json()
        assert one == {"points": 1, "peak_points_per_minute": 1, "refusals": 1}
        report = control.get("/secondary-limit").json()
    assert (report["refusals"], report["injected"]) == (1, 0)
    assert list(report["buckets"].values()) == [one]
    assert "ghp_a" not in str(report)
