"""Challenge codes, and finding a challenge line in a job's log or in its annotations.

The workflow prints ``challenge_line(code)``, a ``::notice::`` workflow command. The runner
consumes it: the log shows ``##[notice]`` followed by the payload, and the check run gets a
notice annotation whose message is the payload. One printed line serves both channels.

Matching is exact, line by line, after undoing what GitHub does to a log (byte-order mark,
timestamps, ANSI colour codes). A masked code (``***``) never matches, and neither does the
echo of a ``run:`` step's script, which GitHub prints before the step's output: the script
only shows that the code was written, not that the step printed it.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Iterable
from dataclasses import dataclass

PAYLOAD_PREFIX = "fork-oidc-challenge "

_TIMESTAMP = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?Z ")
# CSI sequences (colours, cursor moves) and the two-byte escapes; see ECMA-48.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CODE = re.compile(r"^[A-Za-z0-9_-]{22,}$")


def new_code() -> str:
    """192 random bits, URL-safe."""
    return secrets.token_urlsafe(24)


def looks_like_code(text: str) -> bool:
    return bool(_CODE.match(text))


def payload(code: str) -> str:
    return PAYLOAD_PREFIX + code


def challenge_line(code: str) -> str:
    """What the workflow prints, on a line of its own."""
    return "::notice::" + payload(code)


@dataclass(frozen=True)
class LogLine:
    number: int  # 1-based, counting only timestamped lines
    text: str  # without timestamp and ANSI codes
    in_step_header: bool  # part of the echoed script of a ``run:`` step


def clean(raw: str) -> str:
    return _ANSI.sub("", raw).rstrip("\r\n").rstrip()


def log_lines(log: str) -> Iterable[LogLine]:
    """The lines of a job log as printed, continuation lines folded into the line before."""
    in_header = False
    number = 0
    for raw in log.lstrip("\ufeff").splitlines():
        stamp = _TIMESTAMP.match(raw)
        if stamp is None:
            continue  # continuation of a multi-line message: never a line of its own
        number += 1
        text = clean(raw[stamp.end() :])
        if text.startswith("##[group]Run "):
            in_header = True
            yield LogLine(number, text, True)
            continue
        if in_header and text.startswith("##[endgroup]"):
            in_header = False
            yield LogLine(number, text, True)
            continue
        yield LogLine(number, text, in_header)


def code_on_line(text: str) -> str | None:
    """The code if this cleaned line is a challenge as printed (payload, ``##[notice]`` form
    or the raw workflow command), else None."""
    for prefix in ("##[notice]" + PAYLOAD_PREFIX, "::notice::" + PAYLOAD_PREFIX, PAYLOAD_PREFIX):
        if text.startswith(prefix):
            code = text[len(prefix) :]
            return code if looks_like_code(code) else None
    return None


def codes_in_log(log: str) -> dict[str, int]:
    """Every challenge code the steps printed, with the line where each first appears.

    Reading all codes at once lets a job's log be fetched a single time, whichever claims
    are waiting on the run then or later."""
    found: dict[str, int] = {}
    for line in log_lines(log):
        if line.in_step_header:
            continue
        code = code_on_line(line.text)
        if code is not None:
            found.setdefault(code, line.number)
    return found


def find_in_log(log: str, code: str) -> int | None:
    """The line number at which the step's output holds the challenge, or None."""
    return codes_in_log(log).get(code)


def code_in_annotation(message: str | None) -> str | None:
    """The code a notice annotation carries, or None."""
    if message is None:
        return None
    return code_on_line(clean(message))


def annotation_matches(message: str | None, code: str) -> bool:
    return code_in_annotation(message) == code


def codes_in_lines(lines: list[str]) -> set[str]:
    """Challenge codes a step printed, from its live lines (as the web UI serves them: one
    entry each, maybe timestamped), skipping the echoed header of a ``run:`` step exactly as
    codes_in_log does."""
    found: set[str] = set()
    in_header = False
    for raw in lines:
        first = raw.split("\n", 1)[0]  # later lines of an entry are never a line of their own
        stamp = _TIMESTAMP.match(first)
        text = clean(first[stamp.end() :] if stamp else first)
        if text.startswith("##[group]Run "):
            in_header = True
            continue
        if in_header:
            if text.startswith("##[endgroup]"):
                in_header = False
            continue
        code = code_on_line(text)
        if code is not None:
            found.add(code)
    return found
