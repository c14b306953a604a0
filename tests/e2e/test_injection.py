"""A stranger's text printed by a run never proves the stranger's claim: end to end, the issuer
against the simulator's runner (mid-line `##[` commands, line splitting, step headers, times).

Each test makes two claims on the run: the stranger's, whose code some step prints inside text
the stranger wrote, and a witness, printed by the client's own step of the same job. The
witness's token shows the issuer read that log; the stranger's claim then stays pending."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from issuer.sim import GitHubSim, SimJob
from issuer.sim.logs import log_timestamp
from tests.e2e.harness import ForkRun
from tests.e2e.test_flow import exchange, make_claim

Attack = Callable[[SimJob, str], None]  # prints the stranger's payload somewhere in the job


def _stranger_gets_nothing(
    http: httpx.Client, issuer_url: str, pr: ForkRun, attack: Attack
) -> None:
    stranger = make_claim(http, issuer_url, pr.claim_body())
    witness = make_claim(http, issuer_url, pr.claim_body())
    job = pr.job("build")
    attack(job, stranger["challenge_line"].removeprefix("::notice::"))
    pr.client_step(job, witness["challenge_line"])
    pr.sim.finish_job(job)
    assert exchange(http, witness, wait=10).status_code == 200
    assert exchange(http, stranger).status_code == 202


def _printed_by_a_step(sim: GitHubSim, job: SimJob, *lines: str) -> None:
    sim.start_step(job, "Test", script="npm test")
    sim.elapse(job, 2.0)
    for line in lines:
        sim.print_line(job, line)
    sim.finish_step(job)


def test_a_mid_line_command_printed_by_another_step_gets_no_token(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    def attack(job: SimJob, payload: str) -> None:
        _printed_by_a_step(sim, job, f"npm WARN deprecated x@1.2.3: ##[notice]{payload}")

    _stranger_gets_nothing(http, issuer_url, pr, attack)


def test_a_unicode_line_separator_gets_no_token(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    def attack(job: SimJob, payload: str) -> None:
        stamp = log_timestamp(sim.clock() + 3)
        lines = [f"title\u2028{stamp} ##[notice]{payload}", f"title\x85{stamp} {payload}"]
        _printed_by_a_step(sim, job, "::stop-commands::pause", *lines, "::pause::")

    _stranger_gets_nothing(http, issuer_url, pr, attack)


def test_a_lone_carriage_return_gets_no_token(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    def attack(job: SimJob, payload: str) -> None:
        _printed_by_a_step(sim, job, f"title\r##[notice]{payload}")

    _stranger_gets_nothing(http, issuer_url, pr, attack)


def test_forged_group_headers_and_endgroup_get_no_token(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    def attack(job: SimJob, payload: str) -> None:
        _printed_by_a_step(
            sim,
            job,
            "x ##[endgroup]",
            "x ##[group]Run issuer token relay --slot build",
            "\x1b[36;1missuer token relay --slot build\x1b[0m",
            "x ##[endgroup]",
            f"x ##[notice]{payload}",
        )

    _stranger_gets_nothing(http, issuer_url, pr, attack)


def test_the_bare_payload_gets_no_token(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    def attack(job: SimJob, payload: str) -> None:
        pr.client_step(job, payload)

    _stranger_gets_nothing(http, issuer_url, pr, attack)


def test_a_code_in_the_run_scripts_echo_gets_no_token(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    def attack(job: SimJob, payload: str) -> None:
        sim.start_step(job, "Relay", script=f"issuer token relay\n##[notice]{payload}")
        sim.elapse(job, 2.0)
        sim.finish_step(job)

    _stranger_gets_nothing(http, issuer_url, pr, attack)


def test_a_code_printed_by_another_job_that_did_not_run_the_client_gets_no_token(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    def attack(_job: SimJob, payload: str) -> None:
        lint = pr.job("lint")
        _printed_by_a_step(sim, lint, f"::notice::{payload}")
        sim.finish_job(lint)

    _stranger_gets_nothing(http, issuer_url, pr, attack)
