"""What counts as a challenge in a job's log: only the client's own step, as the runner wrote it.

Each log is written by the simulator's runner model (issuer/sim/runner.py: the runner's line
splitting, its `##[` parser found anywhere in a line, its step headers and timestamps) on a
clock the test moves, and read back with the jobs API's whole-second step times."""

from __future__ import annotations

import string
from pathlib import Path

import pytest
import yaml

from issuer.oidc.challenge import (
    StepWindow,
    challenge_line,
    codes_in_lines,
    codes_in_log,
    header_names_client,
    new_code,
    payload,
)
from issuer.sim import GitHubSim, SimJob
from issuer.sim.logs import log_timestamp

ISSUER = "https://issuer.example"
CLIENT = "issuer token relay --slot build"


class Clock:
    def __init__(self) -> None:
        self.now = 1_780_000_000.25

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def sim(clock: Clock) -> GitHubSim:
    return GitHubSim(clock=clock)


@pytest.fixture
def job(sim: GitHubSim) -> SimJob:
    upstream = sim.add_repository("octo-org/octo-repo")
    fork = sim.add_repository("forker/octo-repo", fork_of=upstream)
    run = sim.create_run(upstream, head_repository=fork)
    job = sim.add_job(run, "relay")
    sim.start_job(job)
    return job


def steps_of(job: SimJob) -> list[StepWindow]:
    return [
        StepWindow(s.number, int(s.started_at), int(s.completed_at), s.name)
        for s in job.steps
        if s.completed_at is not None
    ]


def found(sim: GitHubSim, job: SimJob, *codes: str) -> set[str]:
    if job.status != "completed":
        sim.finish_job(job)
    return set(codes_in_log(sim.job_log(job), steps_of(job), codes, ISSUER))


def client_step(sim: GitHubSim, job: SimJob, clock: Clock, *lines: str) -> None:
    """The client's `run:` step: its header, two seconds of work, then ``lines``."""
    sim.start_step(job, "Relay", script=CLIENT)
    clock.now += 2
    for line in lines:
        sim.print_line(job, line)
    clock.now += 0.5
    sim.finish_step(job)


def other_step(sim: GitHubSim, job: SimJob, clock: Clock, *lines: str) -> None:
    """A step that does not run the client and prints a stranger's text."""
    sim.start_step(job, "Test", script="npm test")
    clock.now += 2
    for line in lines:
        sim.print_line(job, line)
    clock.now += 0.5
    sim.finish_step(job)


# -- codes -------------------------------------------------------------------------------


def test_codes_are_url_safe_and_carry_at_least_128_bits() -> None:
    code = new_code()
    assert set(code) <= set(string.ascii_letters + string.digits + "-_")
    assert len(code) * 6 >= 128


def test_codes_are_not_repeated() -> None:
    assert len({new_code() for _ in range(100)}) == 100


def test_the_challenge_line_is_a_notice_command_carrying_the_code() -> None:
    assert challenge_line("abc") == "::notice::fork-oidc-challenge abc"


# -- what counts -------------------------------------------------------------------------


def test_the_client_steps_notice_counts(sim: GitHubSim, job: SimJob, clock: Clock) -> None:
    code = new_code()
    client_step(sim, job, clock, challenge_line(code))
    assert found(sim, job, code) == {code}


def test_the_clients_notice_counts_inside_the_action(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    code = new_code()
    sim.start_step(
        job, "Relay", action="fork-oidc/fork-oidc-issuer@v1", inputs={"issuer-url": ISSUER}
    )
    sim.print_line(job, "##[group]Run set -euo pipefail")  # the composite's own step
    sim.print_line(job, '\x1b[36;1mexec "$issuer" token "$FORK_OIDC_MODE"\x1b[0m')
    sim.print_line(job, "##[endgroup]")
    clock.now += 2
    sim.print_line(job, challenge_line(code))
    sim.finish_step(job)
    assert found(sim, job, code) == {code}


def test_the_actions_one_step_names_the_client_in_its_header() -> None:
    """action.yml runs install and client in one composite step: the runner echoes that
    step's script in its header, and the header must show the client."""
    action = yaml.safe_load((Path(__file__).parents[2] / "action.yml").read_text())
    [step] = action["runs"]["steps"]
    echoed = [f"\x1b[36;1m{line}\x1b[0m" for line in step["run"].splitlines()]
    assert header_names_client(["##[group]Run set -euo pipefail", *echoed], None)


def test_an_action_step_for_another_issuer_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    code = new_code()
    sim.start_step(job, "Relay", action="x/y@v1", inputs={"issuer-url": "https://evil.example"})
    clock.now += 2
    sim.print_line(job, challenge_line(code))
    sim.finish_step(job)
    assert found(sim, job, code) == set()


def test_the_client_step_right_after_a_short_step_counts(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    """A step of a tenth of a second before it: both headers are written in the same second,
    and each step gets its own."""
    code = new_code()
    sim.start_step(job, "Greet", script="echo hi")
    clock.now += 0.1
    sim.finish_step(job)
    client_step(sim, job, clock, challenge_line(code))
    assert found(sim, job, code) == {code}


def test_only_the_wanted_codes_are_kept(sim: GitHubSim, job: SimJob, clock: Clock) -> None:
    mine, other = new_code(), new_code()
    client_step(sim, job, clock, challenge_line(mine), challenge_line(other))
    assert found(sim, job, mine) == {mine}


def test_windows_line_endings_do_not_hide_a_code(sim: GitHubSim, job: SimJob, clock: Clock) -> None:
    code = new_code()
    client_step(sim, job, clock, challenge_line(code))
    sim.finish_job(job)
    log = sim.job_log(job).replace("\n", "\r\n")
    assert set(codes_in_log(log, steps_of(job), [code], ISSUER)) == {code}


def test_a_masked_code_does_not_count(sim: GitHubSim, job: SimJob, clock: Clock) -> None:
    code = new_code()
    client_step(sim, job, clock, f"::add-mask::{code}", challenge_line(code))
    assert found(sim, job, code) == set()


def test_a_notice_printed_in_the_steps_first_second_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    code = new_code()
    sim.start_step(job, "Relay", script=CLIENT)
    sim.print_line(job, challenge_line(code))
    clock.now += 2
    sim.finish_step(job)
    assert found(sim, job, code) == set()


# -- attacks: text a stranger wrote, printed by a step ---------------------------------------


def test_a_mid_line_command_in_another_step_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    code = new_code()
    other_step(sim, job, clock, f"npm WARN deprecated x@1.2.3: ##[notice]{payload(code)}")
    client_step(sim, job, clock, "nothing printed here")
    assert f"##[notice]{payload(code)}\n" in sim.job_log(job)  # the runner made the line
    assert found(sim, job, code) == set()


def test_a_mid_line_command_in_a_step_after_the_client_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    code = new_code()
    client_step(sim, job, clock, "nothing printed here")
    other_step(sim, job, clock, f"title: ##[notice]{payload(code)}")
    assert found(sim, job, code) == set()


@pytest.mark.parametrize("separator", ["\u2028", "\x85", "\x0b", "\x1c"])
def test_unicode_separators_do_not_make_a_line(
    sim: GitHubSim, job: SimJob, clock: Clock, separator: str
) -> None:
    """Under ``::stop-commands::`` the runner writes a line as printed; only ``\n`` and
    ``\r`` end it, so what follows another separator is never a line of its own."""
    code = new_code()
    sim.start_step(job, "Relay", script=CLIENT)
    clock.now += 2
    sim.print_line(job, "::stop-commands::pause")
    stamp = log_timestamp(clock.now)
    sim.print_line(job, f"title{separator}{stamp} ##[notice]{payload(code)}")
    sim.print_line(job, "::pause::")
    sim.finish_step(job)
    assert found(sim, job, code) == set()


def test_a_lone_carriage_return_with_a_forged_timestamp_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    """The runner ends a line at a lone ``\\r``; the next piece's stamp is the stranger's."""
    code = new_code()
    forged = "2026-11-27T00:00:00.0000000Z"
    other_step(sim, job, clock, f"title\r{forged} ##[notice]{payload(code)}")
    client_step(sim, job, clock, "nothing printed here")
    assert found(sim, job, code) == set()


def test_forged_timestamps_inside_the_clients_step_window_do_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    """A continuation line (``%0A`` in a command) carries whatever stamp the text chose: here
    a whole forged client step (header and notice) stamped when the client's step, which runs
    next, will run. The real lines after them are stamped earlier: that gives them away."""
    code = new_code()
    start = clock.now + 2.5  # when the client's step will begin
    forged = [
        f"{log_timestamp(start + 0.1)} ##[group]Run {CLIENT}",
        f"{log_timestamp(start + 0.1)} \x1b[36;1m{CLIENT}\x1b[0m",
        f"{log_timestamp(start + 0.1)} ##[endgroup]",
        f"{log_timestamp(start + 2.2)} ##[notice]{payload(code)}",
    ]
    other_step(sim, job, clock, "##[warning]x%0A" + "%0A".join(forged))
    assert clock.now == start
    client_step(sim, job, clock, "nothing printed here")
    assert found(sim, job, code) == set()


def test_forged_group_headers_and_endgroup_in_another_step_do_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    code = new_code()
    other_step(
        sim,
        job,
        clock,
        "a ##[endgroup]",
        f"b ##[group]Run {CLIENT}",
        f"\x1b[36;1m{CLIENT}\x1b[0m",
        "c ##[endgroup]",
        f"d ##[notice]{payload(code)}",
    )
    assert found(sim, job, code) == set()


def test_a_forged_client_header_at_the_end_of_the_step_before_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    code = new_code()
    sim.start_step(job, "Title", script='echo "$TITLE"')
    clock.now += 2
    sim.print_line(job, f"a ##[group]Run {CLIENT}")
    sim.print_line(job, f"\x1b[36;1m{CLIENT}\x1b[0m")
    sim.print_line(job, "b ##[endgroup]")
    sim.finish_step(job)
    other_step(sim, job, clock, f"c ##[notice]{payload(code)}")
    assert found(sim, job, code) == set()


def test_a_forged_client_header_at_the_start_of_another_step_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    """The stranger's text is the step's first output, in its first second, forging the
    client's header; more of it, later in the step, carries the notice."""
    code = new_code()
    sim.start_step(job, "Test", script="npm test")
    sim.print_line(job, f"a ##[group]Run {CLIENT}")
    sim.print_line(job, f"\x1b[36;1m{CLIENT}\x1b[0m")
    sim.print_line(job, "b ##[endgroup]")
    clock.now += 2
    sim.print_line(job, f"c ##[notice]{payload(code)}")
    sim.finish_step(job)
    assert found(sim, job, code) == set()


def test_a_forged_client_line_in_another_steps_env_value_does_not_name_it(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    """A multi-line `env:` value (a pull request's body) continues on lines the runner does
    not stamp: here a forged stamp and a cyan `issuer token` line inside the header of a step
    that then prints the stranger's notice. The stamp cannot be the runner's: it is later
    than the `##[endgroup]` the runner writes after it."""
    code = new_code()
    forged = f"{log_timestamp(clock.now + 0.5)} \x1b[36;1m{CLIENT}\x1b[0m"
    sim.start_step(job, "Test", script="npm test", env={"BODY": f"hello\n{forged}"})
    clock.now += 2
    sim.print_line(job, f"c ##[notice]{payload(code)}")
    sim.finish_step(job)
    assert f"\n{forged}\n" in sim.job_log(job)
    assert found(sim, job, code) == set()


def test_a_notice_at_the_start_of_the_step_after_the_client_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    """Printed in the second the client's step ended in, which is still inside its window:
    the next step's header stands between."""
    code = new_code()
    client_step(sim, job, clock, "nothing printed here")
    sim.start_step(job, "Test", script="npm test")
    sim.print_line(job, f"title: ##[notice]{payload(code)}")
    clock.now += 2
    sim.finish_step(job)
    assert found(sim, job, code) == set()


def test_the_bare_payload_does_not_count(sim: GitHubSim, job: SimJob, clock: Clock) -> None:
    code = new_code()
    client_step(sim, job, clock, payload(code))
    assert found(sim, job, code) == set()


def test_a_code_in_the_run_scripts_echo_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    code = new_code()
    sim.start_step(job, "Relay", script=f"{CLIENT}\n##[notice]{payload(code)}")
    clock.now += 2
    sim.finish_step(job)
    assert found(sim, job, code) == set()


def test_a_code_in_an_env_value_of_the_clients_header_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    code = new_code()
    sim.start_step(job, "Relay", script=CLIENT, env={"TITLE": f"##[notice]{payload(code)}"})
    clock.now += 2
    sim.finish_step(job)
    assert found(sim, job, code) == set()


def test_a_notice_with_colour_around_it_does_not_count(
    sim: GitHubSim, job: SimJob, clock: Clock
) -> None:
    code = new_code()
    client_step(sim, job, clock, f"\x1b[33m##[notice]{payload(code)}\x1b[0m")
    assert found(sim, job, code) == set()


# -- the web UI's live lines, one step at a time -----------------------------------------------


def test_live_lines_of_the_client_step_count() -> None:
    code = new_code()
    lines = [f"##[group]Run {CLIENT}", f"\x1b[36;1m{CLIENT}\x1b[0m", "##[endgroup]"]
    assert codes_in_lines([*lines, f"##[notice]{payload(code)}"], ISSUER) == {code}


def test_live_lines_of_another_step_do_not_count() -> None:
    code = new_code()
    lines = ["##[group]Run npm test", "\x1b[36;1mnpm test\x1b[0m", "##[endgroup]"]
    assert codes_in_lines([*lines, f"##[notice]{payload(code)}"], ISSUER) == set()


def test_live_lines_with_a_forged_client_header_do_not_count() -> None:
    code = new_code()
    lines = [
        "##[group]Run npm test",
        "##[endgroup]",
        f"##[group]Run {CLIENT}",
        f"\x1b[36;1m{CLIENT}\x1b[0m",
        "##[endgroup]",
        f"##[notice]{payload(code)}",
    ]
    assert codes_in_lines(lines, ISSUER) == set()
