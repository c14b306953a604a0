"""No test draws a secondary-limit refusal from a simulator unless it set out to.

The simulator enforces GitHub's secondary rate limit by default, as GitHub does. A refusal
that a test did not ask for means that something (the issuer's client, a test's own loop)
called the API harder than GitHub allows: the test fails at teardown and says how. A test
that means to hammer the simulator carries `@pytest.mark.provokes_secondary_limit`; refusals
injected with `fail_next(..., secondary=True)` are provoked by definition and never count.

`tests/conftest.py` applies the check to every simulator made in the test's process; a
fixture that starts an `issuer github-sim` process checks it through the control API with
`check_report`.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pytest

from issuer.sim import GitHubSim

MARKER = "provokes_secondary_limit"


class UnprovokedSecondaryLimit(AssertionError):
    """A simulator refused requests for the secondary limit in a test that did not ask."""


def check_simulators(sims: Iterable[GitHubSim], *, provoked: bool) -> None:
    """Fail unless every simulator gave no secondary-limit refusal of its own (or `provoked`)."""
    for sim in sims:
        check_report(
            {
                "refusals": sim.secondary_refusals(),
                "buckets": {n: u.as_dict() for n, u in sim.secondary_report().items()},
            },
            provoked=provoked,
        )


def check_report(report: Mapping[str, Any], *, provoked: bool) -> None:
    """The same check on a simulator's `GET /_sim/secondary-limit` answer."""
    if provoked or not report["refusals"]:
        return
    refused = {name: usage for name, usage in report["buckets"].items() if usage["refusals"]}
    raise UnprovokedSecondaryLimit(
        f"the GitHub simulator gave {report['refusals']} secondary-limit refusal(s) "
        f"the test did not ask for: {refused}. Find out who called so hard; mark the test "
        f"@pytest.mark.{MARKER} only if it hammers the API on purpose."
    )


def provoked(request: pytest.FixtureRequest) -> bool:
    return request.node.get_closest_marker(MARKER) is not None


@contextmanager
def simulators_made(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[GitHubSim]]:
    """Every GitHubSim constructed inside the block, in order."""
    made: list[GitHubSim] = []
    original = GitHubSim.__init__

    def recording(self: GitHubSim, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(self)

    with monkeypatch.context() as patch:
        patch.setattr(GitHubSim, "__init__", recording)
        yield made
