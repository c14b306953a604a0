"""The runner's handling of output, without a server: command parsing and the job console."""

from __future__ import annotations

from issuer.sim.runner import JobConsole, WorkflowCommand, parse_command

REGISTERED = frozenset({"notice", "error", "add-mask", "group"})


def console() -> JobConsole:
    made = JobConsole(lambda: 0.0)
    made.begin_step(2)
    return made


def texts(made: JobConsole) -> list[str]:
    return [entry.text for entry in made.entries]


def test_a_command_has_a_name_properties_and_data() -> None:
    assert parse_command("::notice title=A%2CB,file=x%3Ay::hello%0Aworld", REGISTERED) == (
        WorkflowCommand("notice", {"title": "A,B", "file": "x:y"}, "hello\nworld")
    )


def test_leading_whitespace_and_upper_case_still_make_a_command() -> None:
    assert parse_command("   ::NOTICE::hi", REGISTERED) == WorkflowCommand("notice", {}, "hi")


def test_an_unregistered_or_unfinished_command_is_plain_output() -> None:
    assert parse_command("::set-output-ish::x", REGISTERED) is None
    assert parse_command("::notice", REGISTERED) is None
    assert parse_command("text ::notice::x", REGISTERED) is None


def test_the_legacy_form_counts_anywhere_in_the_line() -> None:
    assert parse_command("prefix ##[error]boom", REGISTERED) == WorkflowCommand("error", {}, "boom")


def test_echo_on_prints_commands_before_running_them() -> None:
    made = console()
    made.output("::echo::on")
    made.output("::group::g")
    made.output("::add-mask::s3cret")
    assert texts(made) == ["::group::g", "##[group]g", "::add-mask::***"]


def test_an_empty_mask_is_a_warning() -> None:
    made = console()
    made.output("::add-mask::  ")
    assert made.annotations[0].level == "warning"


def test_an_error_annotation_has_level_failure_and_records_its_step() -> None:
    made = console()
    made.output("::error::broken")
    [annotation] = made.annotations
    assert (annotation.level, annotation.step_number) == ("failure", 2)


def test_stop_commands_with_an_empty_token_never_resumes() -> None:
    made = console()
    made.output("::stop-commands::")
    made.output("::::")
    made.output("::notice::x")
    assert made.annotations == []


def test_a_longer_mask_wins_over_a_shorter_one_it_contains() -> None:
    made = console()
    made.output("::add-mask::abc")
    made.output("::add-mask::abcdef")
    made.output("abcdef abc")
    assert texts(made) == ["*** ***"]
