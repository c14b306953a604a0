"""Finding the challenge line in logs shaped like GitHub's (GITHUB.md, 'What a log looks like')."""

from issuer.oidc.challenge import (
    annotation_matches,
    challenge_line,
    find_in_log,
    looks_like_code,
    new_code,
    payload,
)

CODE = "Zq3x9K2mN8pL4vR7tY1wB5cD6fG0hJ"
OTHER = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
BOM = "\ufeff"


def stamp(second: int) -> str:
    return f"2025-12-30T06:02:{second:02d}.7445229Z "


def log_of(*lines: str) -> str:
    return BOM + "".join(stamp(i) + line + "\n" for i, line in enumerate(lines))


def test_codes_are_url_safe_and_carry_at_least_128_bits() -> None:
    code = new_code()
    assert looks_like_code(code)
    assert len(code) * 6 >= 128


def test_codes_are_not_repeated() -> None:
    assert len({new_code() for _ in range(1000)}) == 1000


def test_the_challenge_line_is_a_notice_command_carrying_the_code() -> None:
    assert challenge_line(CODE) == f"::notice::fork-oidc-challenge {CODE}"


def test_a_notice_printed_by_a_step_is_found() -> None:
    log = log_of("##[group]Run echo hi", "echo hi", "##[endgroup]", f"##[notice]{payload(CODE)}")
    assert find_in_log(log, CODE) == 4


def test_the_bare_payload_on_a_line_of_its_own_is_found() -> None:
    assert find_in_log(log_of("Starting", payload(CODE)), CODE) == 2


def test_the_unprocessed_command_is_found_when_commands_were_stopped() -> None:
    assert find_in_log(log_of(challenge_line(CODE)), CODE) == 1


def test_the_byte_order_mark_does_not_hide_a_first_line_match() -> None:
    assert find_in_log(BOM + stamp(1) + payload(CODE) + "\n", CODE) == 1


def test_ansi_colour_codes_around_the_line_are_ignored() -> None:
    log = log_of(f"\x1b[36;1m##[notice]{payload(CODE)}\x1b[0m")
    assert find_in_log(log, CODE) == 1


def test_a_code_split_by_ansi_codes_is_found() -> None:
    log = log_of(f"fork-oidc-challenge {CODE[:10]}\x1b[1m{CODE[10:20]}\x1b[0m{CODE[20:]}")
    assert find_in_log(log, CODE) == 1


def test_windows_line_endings_are_ignored() -> None:
    assert find_in_log(BOM + stamp(1) + payload(CODE) + "\r\n", CODE) == 1


def test_a_masked_code_does_not_match() -> None:
    assert find_in_log(log_of("##[notice]fork-oidc-challenge ***"), CODE) is None


def test_another_claims_code_does_not_match() -> None:
    assert find_in_log(log_of(f"##[notice]{payload(OTHER)}"), CODE) is None


def test_the_code_inside_a_longer_line_does_not_match() -> None:
    log = log_of(f"PR title: please merge ##[notice]{payload(CODE)}", f"x {payload(CODE)}")
    assert find_in_log(log, CODE) is None


def test_a_prefix_of_the_code_does_not_match() -> None:
    assert find_in_log(log_of(f"##[notice]{payload(CODE[:-1])}"), CODE) is None


def test_the_echoed_script_of_a_run_step_does_not_count() -> None:
    log = log_of(
        f"##[group]Run echo '{challenge_line(CODE)}'",
        payload(CODE),  # a later line of the script, echoed in the header
        "shell: /usr/bin/bash -e {0}",
        "##[endgroup]",
        "the step failed before printing anything",
    )
    assert find_in_log(log, CODE) is None


def test_output_after_the_echoed_script_counts() -> None:
    log = log_of(
        f"##[group]Run echo '{challenge_line(CODE)}'",
        "shell: /usr/bin/bash -e {0}",
        "env:",
        "  ISSUER_URL: https://issuer.example",
        "##[endgroup]",
        f"##[notice]{payload(CODE)}",
    )
    assert find_in_log(log, CODE) == 6


def test_a_continuation_line_of_a_multiline_message_does_not_count() -> None:
    log = BOM + stamp(1) + "a message\n" + payload(CODE) + "\n"
    assert find_in_log(log, CODE) is None


def test_a_line_without_a_timestamp_is_never_a_match() -> None:
    assert find_in_log(payload(CODE) + "\n", CODE) is None


def test_an_annotation_with_the_payload_matches() -> None:
    assert annotation_matches(payload(CODE), CODE)


def test_an_annotation_with_another_code_does_not_match() -> None:
    assert not annotation_matches(payload(OTHER), CODE)
    assert not annotation_matches(None, CODE)
    assert not annotation_matches(f"{payload(CODE)} and more", CODE)
