"""The suite's guard: a test that draws a secondary-limit refusal it did not ask for fails."""

from __future__ import annotations

import pytest

from issuer.sim import GitHubSim, SimSettings
from tests.simulator_guard import UnprovokedSecondaryLimit, check_report, check_simulators

# The direct checks below make simulators that refused: the guard itself must spare them.
pytestmark = pytest.mark.provokes_secondary_limit

_INNER_TEST = """
import pytest
from starlette.testclient import TestClient

from issuer.sim import GitHubSim, SimSettings, create_sim_app


def draw(sim):
    with TestClient(create_sim_app(sim), headers={"User-Agent": "t"}) as client:
        return [client.get("/rate_limit").status_code for _ in range(2)]


def test_draws_a_refusal():
    assert draw(GitHubSim(SimSettings(secondary_points_per_minute=1))) == [200, 403]


@pytest.mark.provokes_secondary_limit
def test_draws_a_refusal_on_purpose():
    assert draw(GitHubSim(SimSettings(secondary_points_per_minute=1))) == [200, 403]


def test_asks_for_a_refusal():
    sim = GitHubSim()
    sim.fail_next(1, secondary=True)
    assert draw(sim) == [403, 200]
"""


def refused_once() -> GitHubSim:
    sim = GitHubSim(SimSettings(secondary_points_per_minute=1))
    with sim.lock:
        sim.secondary.charge("anonymous", 1, 1)
        sim.secondary.charge("anonymous", 1, 1)
    return sim


def test_the_check_fails_a_simulator_that_refused() -> None:
    with pytest.raises(UnprovokedSecondaryLimit, match="1 secondary-limit refusal"):
        check_simulators([GitHubSim(), refused_once()], provoked=False)


def test_the_check_passes_a_test_that_provoked_the_limit() -> None:
    check_simulators([refused_once()], provoked=True)


def test_the_check_reads_a_simulator_process_report() -> None:
    report = {"refusals": 2, "injected": 0, "buckets": {"user:1": {"refusals": 2}}}
    with pytest.raises(UnprovokedSecondaryLimit, match="user:1"):
        check_report(report, provoked=False)


def test_the_suite_fails_an_unprovoked_refusal_and_spares_marked_and_injected_ones(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeconftest("from tests.conftest import _no_secondary_limit_refusals\n")
    pytester.makeini(
        "[pytest]\nasyncio_default_fixture_loop_scope = function\n"
        "markers = provokes_secondary_limit: on purpose\n"
    )
    pytester.makepyfile(test_inner=_INNER_TEST)
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=3, errors=1)
    result.stdout.fnmatch_lines(["*ERROR at teardown of test_draws_a_refusal*"])
