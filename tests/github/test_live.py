"""LiveLogChannel: challenge codes printed so far by a running job, through the web UI."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable

import pytest

from issuer.github.facts import JobFacts
from issuer.github.live import LiveLogChannel
from issuer.oidc.challenge import codes_in_lines, new_code, payload
from issuer.sim import GitHubSim, SimJob, SimRun
from tests.github.support import API, BLOBS, UPSTREAM, WEB, RecordingTransport

SESSION = "live-session-" + "s" * 20

MakeChannel = Callable[..., LiveLogChannel]


@pytest.fixture
async def make_channel(transport: RecordingTransport) -> AsyncIterator[MakeChannel]:
    made: list[LiveLogChannel] = []

    def make(session: str = SESSION, web_url: str = WEB) -> LiveLogChannel:
        channel = LiveLogChannel(
            web_url,
            session,
            limiter=asyncio.Semaphore(4),
            find_codes=codes_in_lines,
            transport=transport,
        )
        made.append(channel)
        return channel

    yield make
    for channel in made:
        await channel.aclose()


@pytest.fixture
def job(sim: GitHubSim, fork_run: SimRun) -> SimJob:
    sim.add_web_session(SESSION)
    job = sim.add_job(fork_run, "single")
    sim.start_job(job)
    return job


def facts(job: SimJob) -> JobFacts:
    return JobFacts.parse({"id": job.id, "status": job.status, "run_attempt": 1})


async def test_a_code_printed_by_the_running_step_is_found(
    sim: GitHubSim, make_channel: MakeChannel, fork_run: SimRun, job: SimJob
) -> None:
    code = new_code()
    sim.start_step(job, "Token", script="issuer token")
    sim.print_line(job, "::notice::" + payload(code))
    found = await make_channel().codes_in_running_job(UPSTREAM, fork_run.id, facts(job))
    assert found == {code}


async def test_a_code_printed_in_an_earlier_step_of_the_running_job_is_found(
    sim: GitHubSim, make_channel: MakeChannel, fork_run: SimRun, job: SimJob
) -> None:
    code = new_code()
    sim.start_step(job, "Claim", script="issuer token claim")
    sim.print_line(job, "::notice::" + payload(code))
    sim.start_step(job, "Exchange", script="issuer token exchange")
    found = await make_channel().codes_in_running_job(UPSTREAM, fork_run.id, facts(job))
    assert found == {code}


async def test_a_code_only_in_the_echoed_script_is_not_found(
    sim: GitHubSim, make_channel: MakeChannel, fork_run: SimRun, job: SimJob
) -> None:
    sim.start_step(job, "Echo", script=f"{payload(new_code())}\nsleep 600")
    found = await make_channel().codes_in_running_job(UPSTREAM, fork_run.id, facts(job))
    assert found == set()


async def test_a_masked_code_is_not_found(
    sim: GitHubSim, make_channel: MakeChannel, fork_run: SimRun, job: SimJob
) -> None:
    code = new_code()
    sim.start_step(job, "Token", script="issuer token")
    sim.print_line(job, f"::add-mask::{code}")
    sim.print_line(job, "::notice::" + payload(code))
    found = await make_channel().codes_in_running_job(UPSTREAM, fork_run.id, facts(job))
    assert found == set()


async def test_a_refused_session_finds_nothing_and_says_so_without_the_cookie(
    sim: GitHubSim,
    make_channel: MakeChannel,
    fork_run: SimRun,
    job: SimJob,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.start_step(job, "Token", script="issuer token")
    sim.print_line(job, "::notice::" + payload(new_code()))
    expired = "expired-session-" + "x" * 20
    with caplog.at_level(logging.WARNING, logger="issuer.github.live"):
        found = await make_channel(expired).codes_in_running_job(UPSTREAM, fork_run.id, facts(job))
    assert found == set()
    assert "ISSUER_GITHUB_WEB_SESSION" in caplog.text
    assert expired not in caplog.text


async def test_the_cookie_goes_to_the_web_origin_only(
    sim: GitHubSim,
    make_channel: MakeChannel,
    transport: RecordingTransport,
    fork_run: SimRun,
    job: SimJob,
) -> None:
    sim.start_step(job, "Token", script="issuer token")
    await make_channel().codes_in_running_job(UPSTREAM, fork_run.id, facts(job))
    web = transport.to(WEB)
    assert web and all(SESSION in r.headers["cookie"] for r in web)
    assert all(r.url.host == "web.sim" for r in transport.requests)
    assert not transport.to(API) and not transport.to(BLOBS)


async def test_redirects_are_not_followed(
    sim: GitHubSim,
    make_channel: MakeChannel,
    transport: RecordingTransport,
    fork_run: SimRun,
    job: SimJob,
) -> None:
    await make_channel("not-a-session").codes_in_running_job(UPSTREAM, fork_run.id, facts(job))
    assert [r.url.path for r in transport.requests] == [
        f"/{UPSTREAM}/actions/runs/{fork_run.id}/jobs/{job.id}/steps"
    ]


async def test_a_completed_step_is_read_once(
    sim: GitHubSim,
    make_channel: MakeChannel,
    transport: RecordingTransport,
    fork_run: SimRun,
    job: SimJob,
) -> None:
    sim.start_step(job, "Token", script="issuer token")
    channel = make_channel()
    await channel.codes_in_running_job(UPSTREAM, fork_run.id, facts(job))
    await channel.codes_in_running_job(UPSTREAM, fork_run.id, facts(job))
    reads = [r.url.path for r in transport.requests if r.url.path.endswith("/backscroll")]
    assert (
        reads.count(f"/{UPSTREAM}/actions/runs/{fork_run.id}/jobs/{job.id}/steps/1/backscroll") == 1
    )
    assert (
        reads.count(f"/{UPSTREAM}/actions/runs/{fork_run.id}/jobs/{job.id}/steps/2/backscroll") == 2
    )


async def test_a_queued_job_costs_no_request(
    sim: GitHubSim, make_channel: MakeChannel, transport: RecordingTransport, fork_run: SimRun
) -> None:
    queued = sim.add_job(fork_run, "later")
    found = await make_channel().codes_in_running_job(UPSTREAM, fork_run.id, facts(queued))
    assert found == set() and transport.requests == []


async def test_a_malformed_repository_name_costs_no_request(
    make_channel: MakeChannel, transport: RecordingTransport, fork_run: SimRun, job: SimJob
) -> None:
    found = await make_channel().codes_in_running_job("../evil", fork_run.id, facts(job))
    assert found == set() and transport.requests == []


def test_later_lines_of_a_multi_line_entry_are_not_lines_of_their_own() -> None:
    code = new_code()
    lines = [f"2025-01-01T00:00:00.0000000Z ##[notice]first\n{payload(code)}"]
    assert codes_in_lines(lines) == set()


def test_untimestamped_lines_are_read_too() -> None:
    code = new_code()
    header = ["##[group]Run issuer token", "\x1b[36;1missuer token\x1b[0m", "##[endgroup]"]
    assert codes_in_lines([*header, f"##[notice]{payload(code)}"]) == {code}
