"""One look at a run: which codes a completed job's log is searched for, and when."""

from __future__ import annotations

from issuer.github.channels import LogChannel, Scan
from issuer.github.facts import JobFacts
from issuer.oidc.challenge import LogScan, challenge_line, new_code
from issuer.oidc.runs import Memo, RunKey
from issuer.oidc.watcher import RunReader
from issuer.sim import GitHubSim, SimJob, SimRun
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


def _relay_job(sim: GitHubSim, run: SimRun, name: str, code: str) -> SimJob:
    """A completed job whose client step printed ``code``'s line."""
    job = sim.add_job(run, name)
    sim.start_step(job, "Relay", script="issuer token relay --slot build")
    sim.elapse(job, 2.0)
    sim.print_line(job, challenge_line(code))
    sim.finish_job(job)
    return job


async def test_a_pointed_look_at_one_job_reads_that_job_and_its_log_alone(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, transport: RecordingTransport
) -> None:
    sim.add_token("ghp_reader")
    code = new_code()
    relay = _relay_job(sim, fork_run, "relay", code)
    _relay_job(sim, fork_run, "other", new_code())
    github = make_client(("ghp_reader",))
    reader = RunReader(github, logs=LogChannel(github, scanner))
    key = RunKey(UPSTREAM, fork_run.id, 1)

    async def wanted() -> frozenset[str]:
        return frozenset({code})

    look = await reader.look_at(key, Memo(), run=None, job_ids=[relay.id], wanted=wanted)
    assert set(look.found) == {code}
    paths = [r.url.path for r in transport.requests]
    assert [p for p in paths if "/actions/" in p and "/runs/" not in p] == [
        f"/repos/{UPSTREAM}/actions/jobs/{relay.id}",
        f"/repos/{UPSTREAM}/actions/jobs/{relay.id}/logs",
    ]


async def test_a_pointed_look_at_several_jobs_lists_them_once(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun, transport: RecordingTransport
) -> None:
    sim.add_token("ghp_reader")
    codes = [new_code() for _ in range(3)]
    for number, code in enumerate(codes):
        _relay_job(sim, fork_run, f"matrix ({number})", code)
    github = make_client(("ghp_reader",))
    reader = RunReader(github, logs=LogChannel(github, scanner))
    key = RunKey(UPSTREAM, fork_run.id, 1)

    async def wanted() -> frozenset[str]:
        return frozenset(codes)

    ids = [job.id for job in fork_run.jobs]
    look = await reader.look_at(key, Memo(), run=None, job_ids=ids, wanted=wanted)
    assert set(look.found) == set(codes)
    paths = [r.url.path for r in transport.requests]
    assert sum(p.endswith("/jobs") for p in paths) == 1
    assert not any(
        f"/actions/jobs/{job_id}" == p.split(UPSTREAM)[-1] for p in paths for job_id in ids
    )


async def test_a_pointed_look_ignores_a_job_of_another_run(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_reader")
    code = new_code()
    upstream_repo = fork_run.repository
    other_run = sim.create_run(upstream_repo, head_repository=fork_run.head_repository)
    forged = _relay_job(sim, other_run, "attacker", code)
    github = make_client(("ghp_reader",))
    reader = RunReader(github, logs=LogChannel(github, scanner))

    async def wanted() -> frozenset[str]:
        return frozenset({code})

    key = RunKey(UPSTREAM, fork_run.id, 1)
    look = await reader.look_at(key, Memo(), run=None, job_ids=[forged.id], wanted=wanted)
    assert look.found == {}
