"""The log channel: a completed job's log streamed to a scanner in bounded chunks, off the event
loop, up to a size cap past which nothing of it counts."""

from __future__ import annotations

import threading

from issuer.github.channels import LogChannel, LogState
from issuer.github.facts import JobFacts, StepFacts
from issuer.oidc.challenge import LogScan, challenge_line, new_code
from issuer.sim import GitHubSim, SimJob, SimRun
from tests.github.conftest import MakeClient
from tests.github.support import UPSTREAM

MIB = 1024 * 1024
ISSUER = "https://issuer.example"


class RecordingScan:
    """The issuer's scan, noting how much it was handed at once and on which thread."""

    def __init__(self, job: JobFacts, wanted: frozenset[str]) -> None:
        self.scan = LogScan.of_job(job, wanted, ISSUER)
        self.chunks: list[int] = []
        self.threads: set[int] = set()

    def feed(self, data: bytes) -> None:
        self.chunks.append(len(data))
        self.threads.add(threading.get_ident())
        self.scan.feed(data)

    def finish(self) -> dict[str, int]:
        self.threads.add(threading.get_ident())
        return self.scan.finish()


def facts(job: SimJob) -> JobFacts:
    steps = tuple(
        StepFacts(s.number, s.name, int(s.started_at), int(s.completed_at))
        for s in job.steps
        if s.completed_at is not None
    )
    return JobFacts(job.id, job.name, job.status, job.run_attempt, None, steps=steps)


def a_64_mib_log_ending_with(sim: GitHubSim, fork_run: SimRun, line: str) -> SimJob:
    """64 lines of 1 MiB printed by one step, then the client's step printing ``line``."""
    job = sim.add_job(fork_run, "big")
    sim.start_step(job, "Test", script="make test")
    for _ in range(64):
        sim.print_line(job, "x" * MIB)
    sim.start_step(job, "Relay", script="issuer token relay --slot build")
    sim.elapse(job, 2.0)
    sim.print_line(job, line)
    sim.finish_job(job)
    return job


async def test_a_64_mib_log_is_scanned_in_bounded_chunks_off_the_event_loop(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_reader")
    code = new_code()
    job = a_64_mib_log_ending_with(sim, fork_run, challenge_line(code))
    scans: list[RecordingScan] = []

    def scanner(job: JobFacts, wanted: frozenset[str]) -> RecordingScan:
        scans.append(RecordingScan(job, wanted))
        return scans[-1]

    channel = LogChannel(make_client(("ghp_reader",)), scanner, max_bytes=80 * MIB)
    read = await channel.codes(UPSTREAM, facts(job), frozenset({code}))
    assert (read.state, read.codes) == (LogState.READ, frozenset({code}))
    [scan] = scans
    assert sum(scan.chunks) > 64 * MIB
    assert max(scan.chunks) < 2 * MIB  # handed over as it arrives, never whole
    assert threading.get_ident() not in scan.threads


async def test_a_log_over_the_cap_is_read_no_further_and_nothing_of_it_counts(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    """Its end could undo its start (a later line stamped earlier), so none of it counts."""
    sim.add_token("ghp_reader")
    code = new_code()
    job = sim.add_job(fork_run, "big")
    sim.start_step(job, "Relay", script="issuer token relay --slot build")
    sim.elapse(job, 2.0)
    sim.print_line(job, challenge_line(code))
    for _ in range(64):
        sim.print_line(job, "x" * MIB)
    sim.finish_job(job)
    scans: list[RecordingScan] = []

    def scanner(job: JobFacts, wanted: frozenset[str]) -> RecordingScan:
        scans.append(RecordingScan(job, wanted))
        return scans[-1]

    channel = LogChannel(make_client(("ghp_reader",)), scanner, max_bytes=32 * MIB)
    read = await channel.codes(UPSTREAM, facts(job), frozenset({code}))
    assert (read.state, read.codes) == (LogState.TOO_LARGE, frozenset())
    assert sum(scans[0].chunks) <= 32 * MIB


async def test_of_ten_thousand_code_shaped_strings_only_the_wanted_code_is_kept(
    sim: GitHubSim, make_client: MakeClient, fork_run: SimRun
) -> None:
    sim.add_token("ghp_reader")
    wanted = new_code()
    job = sim.add_job(fork_run, "relay")
    sim.start_step(job, "Relay", script="issuer token relay --slot build")
    sim.elapse(job, 2.0)
    for _ in range(10_000):
        sim.print_line(job, challenge_line(new_code()))
    sim.print_line(job, challenge_line(wanted))
    sim.finish_job(job)
    channel = LogChannel(make_client(("ghp_reader",)), RecordingScan)
    read = await channel.codes(UPSTREAM, facts(job), frozenset({wanted}))
    assert read.codes == frozenset({wanted})
