"""One look at a run: which codes a completed job's log is searched for, and when."""

from __future__ import annotations

from issuer.github.channels import LogChannel, Scan
from issuer.github.facts import JobFacts
from issuer.oidc.challenge import LogScan, challenge_line, new_code
from issuer.oidc.runs import Memo, RunKey
from issuer.oidc.watcher import RunReader
from issuer.sim import GitHubSim, SimRun
from tests.github.conftest import (
    MakeClient,
    clock,
    fork,
    fork_run,
    make_client,
    sim,
    sleeper,
    transport,
    upstream,
)
from tests.github.support import UPSTREAM, RecordingTransport

__all__ = ["clock", "fork", "fork_run", "make_client", "sim", "sleeper", "transport", "upstream"]


def scanner(job: JobFacts, wanted: frozenset[str]) -> Scan:
    return LogScan.of_job(job, wanted, None)


async def test_a_log_is_searched_for_the_codes_pending_once_its_job_was_listed_completed(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, transport: RecordingTransport
) -> None:
    """A claim registered after the watch loop began this look, but before the job that
    printed its code was listed as completed, is searched for: the pending codes are asked
    for after the listing (else that job's log, read once, would never show the code)."""
    sim.add_token("ghp_reader")
    code = new_code()
    job = sim.add_job(fork_run, "relay")
    sim.start_step(job, "Relay", script="issuer token relay --slot build")
    sim.elapse(job, 2.0)
    sim.print_line(job, challenge_line(code))
    sim.finish_job(job)
    listed_before: list[bool] = []

    async def wanted() -> frozenset[str]:
        listed_before.append(any("/jobs" in r.url.path for r in transport.requests))
        return frozenset({code})

    github = make_client(("ghp_reader",))
    reader = RunReader(github, logs=LogChannel(github, scanner))
    key = RunKey(UPSTREAM, fork_run.id, 1)
    look = await reader.look(key, Memo(), waiting=True, now=0.0, wanted=wanted)
    assert listed_before == [True]
    assert set(look.found) == {code}
