"""Pacing under GitHub's secondary limit: every request draws its points from its credential's
budget, shared by every replica through the store, waiting runs first when points are short."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from prometheus_client import REGISTRY
from redis.crc import key_slot

from issuer.github.client import GitHubClient
from issuer.github.credentials import InstallationCredential
from issuer.github.pacing import (
    DEFAULT_POINTS_PER_MINUTE,
    GITHUB_POINTS_PER_MINUTE,
    Pacer,
    Priority,
    bucket_key,
    paced_as,
)
from issuer.sim import GitHubSim, SimRun
from issuer.store import MemoryStore, RedisStore
from tests.github.conftest import APP_ID, INSTALLATION_ID, MakeClient
from tests.github.support import API, UPSTREAM, RecordingTransport, Sleeper
from tests.sim.support import FakeClock

PACE = 60  # points a minute: a capacity of 10 points, refilled at one a second
WINDOW = 60.0


def run_path(run: SimRun) -> str:
    return f"/repos/{UPSTREAM}/actions/runs/{run.id}"


def jobs_path(run: SimRun, n: int) -> str:
    """A distinct URL per n."""
    return f"/repos/{UPSTREAM}/actions/runs/{run.id}/jobs?per_page={n}"


class TimedTransport(httpx.AsyncBaseTransport):
    """Notes the clock's time of every request sent to the API."""

    def __init__(self, inner: httpx.AsyncBaseTransport, clock: Callable[[], float]) -> None:
        self.inner = inner
        self.clock = clock
        self.sent: list[tuple[float, str]] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        if str(request.url).startswith(API + "/"):
            self.sent.append((self.clock(), str(request.url)))
        return await self.inner.handle_async_request(request)

    def busiest_window(self) -> int:
        """The most requests sent in any window of a minute."""
        times = sorted(at for at, _ in self.sent)
        most, start = 0, 0
        for end, at in enumerate(times):
            while times[start] <= at - WINDOW:
                start += 1
            most = max(most, end - start + 1)
        return most

    async def aclose(self) -> None:
        await self.inner.aclose()


class SharedTimeSleeper(Sleeper):
    """Sleeps of concurrent tasks overlap: each moves the fake clock to when it ends, unless
    the clock is already past that (plain Sleeper adds every task's sleep up)."""

    async def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)
        ends = self.clock.now + seconds
        await asyncio.sleep(0)
        self.clock.now = max(self.clock.now, ends)


def points(credential: str, priority: str = "waiting") -> float:
    labels = {"credential": credential, "priority": priority}
    return REGISTRY.get_sample_value("issuer_github_points_total", labels) or 0.0


@pytest.fixture
def timed(transport: RecordingTransport, clock: FakeClock) -> TimedTransport:
    return TimedTransport(transport, clock)


@pytest.fixture
def store(clock: FakeClock) -> MemoryStore:
    """The in-process store on the tests' clock: the pace follows the fake sleeps."""
    return MemoryStore(clock=clock)


async def drain(github: GitHubClient, run: SimRun, requests: int = PACE // 6) -> None:
    """Spend a full bucket (waiting runs' requests), so that no time passes meanwhile."""
    for n in range(requests):
        await github.get_json(jobs_path(run, 1000 + n))


# --- the bound -------------------------------------------------------------------------------


def test_the_default_pace_stays_under_githubs_limit_in_any_minute() -> None:
    pacer = Pacer(MemoryStore(), DEFAULT_POINTS_PER_MINUTE, asyncio.sleep)
    assert pacer.capacity + pacer.rate * WINDOW == 840 < GITHUB_POINTS_PER_MINUTE


async def test_no_minute_of_two_thousand_requests_spends_more_than_the_pace_allows(
    sim: GitHubSim,
    make_client: MakeClient,
    timed: TimedTransport,
    store: MemoryStore,
    fork_run: SimRun,
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",), store, transport=timed, points_per_minute=PACE)
    for _ in range(2000):  # the same URL: 304s after the first, which count too
        await github.get_json(run_path(fork_run))
    assert len(timed.sent) == 2000
    assert timed.busiest_window() <= PACE + PACE // 6


async def test_unpaced_the_same_requests_overspend(
    sim: GitHubSim,
    make_client: MakeClient,
    timed: TimedTransport,
    store: MemoryStore,
    fork_run: SimRun,
) -> None:
    """The control of the test above: without pacing, its bound does not hold."""
    # What the client sends is measured here, not what GitHub answers: the simulator's own
    # secondary limit (on by default) would refuse the 901st point and stop the loop.
    sim.settings.secondary_points_per_minute = 0
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",), store, transport=timed, points_per_minute=None)
    for _ in range(2000):
        await github.get_json(run_path(fork_run))
    assert timed.busiest_window() > PACE + PACE // 6


# --- replicas ----------------------------------------------------------------------------------


async def test_two_replicas_on_one_redis_share_one_budget_whatever_their_clocks(
    sim: GitHubSim,
    make_client: MakeClient,
    fork_run: SimRun,
    redis_url: str,
    clock: FakeClock,
) -> None:
    sim.add_token("ghp_a")
    first_sleeps, second_sleeps = [], []

    async def sleep_into(calls: list[float], seconds: float) -> None:
        calls.append(seconds)
        await asyncio.sleep(seconds)  # the pace is Redis's clock: really wait

    stores = [RedisStore.from_url(redis_url), RedisStore.from_url(redis_url)]
    try:
        first = make_client(
            ("ghp_a",),
            stores[0],
            points_per_minute=PACE,
            sleep=lambda s: sleep_into(first_sleeps, s),
        )
        second = make_client(
            ("ghp_a",),
            stores[1],
            points_per_minute=PACE,
            clock=lambda: clock() + 3600,  # an hour ahead: no matter
            sleep=lambda s: sleep_into(second_sleeps, s),
        )
        await drain(first, fork_run)
        for n in range(2):
            await second.get_json(jobs_path(fork_run, n + 1))
    finally:
        for store in stores:
            await store.close()
    assert first_sleeps == []
    assert second_sleeps  # the first spent the bucket both draw from


def test_every_credentials_bucket_is_in_one_cluster_slot() -> None:
    names = ["token-1a2b3c4d", "app-1-inst-2", "app-1", "anonymous"]
    assert len({key_slot(("issuer:" + bucket_key(name)).encode()) for name in names}) == 1


# --- priorities --------------------------------------------------------------------------------


async def test_finished_runs_draw_below_where_idle_ones_stop(clock: FakeClock) -> None:
    pacer = Pacer(MemoryStore(clock=clock), PACE, Sleeper(clock))
    for _ in range(5):  # 5 of 10 points left: under IDLE's floor, over FINISHED's
        await pacer.take("ghp", 1)
    with paced_as(Priority.IDLE):
        idle = await pacer.draw(["ghp"], 1)
    with paced_as(Priority.FINISHED):
        finished = await pacer.draw(["ghp"], 1)
    assert (idle.index, finished.index) == (None, 0)
    assert idle.wait == pytest.approx(10 * 2 / 3 + 1 - 5)


async def test_waiting_runs_are_served_while_an_idle_look_waits_for_them_to_stop(
    sim: GitHubSim,
    make_client: MakeClient,
    timed: TimedTransport,
    store: MemoryStore,
    fork_run: SimRun,
    clock: FakeClock,
) -> None:
    sim.add_token("ghp_a")
    sleeper = SharedTimeSleeper(clock)
    github = make_client(("ghp_a",), store, transport=timed, sleep=sleeper, points_per_minute=PACE)
    await drain(github, fork_run)

    async def idle_look() -> None:
        with paced_as(Priority.IDLE):
            await github.get_json(run_path(fork_run))

    idle = asyncio.create_task(idle_look())
    for n in range(30):  # an exchange waiting on a run, its looks coming one after another
        await asyncio.sleep(0)  # the idle look has its chances to draw
        await github.get_json(jobs_path(fork_run, n + 1))
    await idle
    assert timed.sent[-1][1] == API + run_path(fork_run)  # served after all thirty
    assert len(timed.sent) == 10 + 30 + 1


async def test_a_priority_that_changes_is_honoured_at_the_next_attempt(
    sim: GitHubSim,
    make_client: MakeClient,
    timed: TimedTransport,
    store: MemoryStore,
    fork_run: SimRun,
    clock: FakeClock,
) -> None:
    sim.add_token("ghp_a")
    priority = [Priority.IDLE]

    class ExchangeArrives(Sleeper):
        async def __call__(self, seconds: float) -> None:
            await super().__call__(seconds)
            priority[0] = Priority.WAITING  # an exchange starts waiting on the run

    sleeper = ExchangeArrives(clock)
    github = make_client(("ghp_a",), store, sleep=sleeper, points_per_minute=PACE)
    await drain(github, fork_run)
    with paced_as(lambda: priority[0]):
        await github.get_json(run_path(fork_run))
    assert sleeper.calls == [1.0]  # IDLE needed 7⅔ points; WAITING, the one that came


async def test_requests_outside_any_priority_are_a_waiting_runs(
    sim: GitHubSim, make_client: MakeClient, store: MemoryStore, fork_run: SimRun
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",), store, points_per_minute=PACE)
    name = github.credential_names[0]
    before = points(name, "waiting")
    await github.get_json(run_path(fork_run))
    assert points(name, "waiting") == before + 1


async def test_time_spent_waiting_for_points_is_counted_by_priority(
    sim: GitHubSim, make_client: MakeClient, store: MemoryStore, fork_run: SimRun
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",), store, points_per_minute=PACE)
    await drain(github, fork_run)
    labels = {"priority": "finished"}
    before = REGISTRY.get_sample_value("issuer_github_pacing_wait_seconds_total", labels) or 0
    with paced_as(Priority.FINISHED):
        await github.get_json(run_path(fork_run))
    waited = REGISTRY.get_sample_value("issuer_github_pacing_wait_seconds_total", labels)
    assert waited == pytest.approx(before + 10 / 3 + 1)


# --- several credentials, mints ------------------------------------------------------------------


async def test_two_credentials_share_the_load_by_points_left_not_by_hourly_budget(
    sim: GitHubSim,
    make_client: MakeClient,
    store: MemoryStore,
    fork_run: SimRun,
) -> None:
    sim.add_token("ghp_large", limit=12500)
    sim.add_token("ghp_small", limit=5000)
    github = make_client(("ghp_large", "ghp_small"), store, points_per_minute=PACE)
    for n in range(20):
        await github.get_json(jobs_path(fork_run, n + 1))
    assert sim.counted_requests("ghp_large") == sim.counted_requests("ghp_small") == 10


async def test_a_credential_another_replica_drained_is_spared(
    sim: GitHubSim,
    make_client: MakeClient,
    store: MemoryStore,
    fork_run: SimRun,
) -> None:
    sim.add_token("ghp_a")
    sim.add_token("ghp_b")
    other = make_client(("ghp_a",), store, points_per_minute=PACE)
    for n in range(8):
        await other.get_json(jobs_path(fork_run, n + 1))
    github = make_client(("ghp_a", "ghp_b"), store, points_per_minute=PACE)
    for n in range(6):
        await github.get_json(jobs_path(fork_run, 100 + n))
    assert (sim.counted_requests("ghp_a"), sim.counted_requests("ghp_b")) == (8, 6)


@pytest.mark.usefixtures("installed")
async def test_minting_an_installation_token_draws_five_points_from_the_apps_budget(
    make_client: MakeClient,
    store: MemoryStore,
    installation: InstallationCredential,
    fork_run: SimRun,
) -> None:
    github = make_client(credentials=[installation], store=store, points_per_minute=PACE)
    app, inst = f"app-{APP_ID}", f"app-{APP_ID}-inst-{INSTALLATION_ID}"
    before = points(app), points(inst)
    await github.get_json(run_path(fork_run))
    assert (points(app) - before[0], points(inst) - before[1]) == (5, 1)
    level = await store.draw([bucket_key(app)], 1, rate=1, capacity=10)
    assert level.level == pytest.approx(10 - 5 - 1)


async def test_a_request_waiting_for_points_is_never_sent_unpaid(
    sim: GitHubSim,
    make_client: MakeClient,
    timed: TimedTransport,
    store: MemoryStore,
    fork_run: SimRun,
    clock: FakeClock,
) -> None:
    sim.add_token("ghp_a")
    github = make_client(("ghp_a",), store, transport=timed, points_per_minute=PACE)
    await drain(github, fork_run)
    with paced_as(Priority.IDLE):
        await github.get_json(run_path(fork_run))
    drained_at, idle_at = timed.sent[-2][0], timed.sent[-1][0]
    assert idle_at - drained_at >= 10 * 2 / 3 + 1  # the floor and its point refilled first
