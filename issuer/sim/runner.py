"""What the Actions runner makes of a job's output: workflow commands, masks, log, annotations.

Modelled on actions/runner (`ActionCommand`, `ActionCommandManager`, `OutputManager`,
`ExecutionContext.AddIssue`): a line is first offered to the command parser, in the
`::name props::data` form and in the legacy `##[name props]data` form (found anywhere in the
line); a consumed command prints what its handler prints; everything written is masked with
the values registered so far, never with values registered later.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

AnnotationLevel = Literal["notice", "warning", "failure"]

# Commands whose handler prints nothing of the input line, even with `::echo::on`.
_OMIT_ECHO = frozenset({"add-mask", "debug", "error", "warning", "notice"})
_REGISTERED = frozenset(
    {
        "add-mask",
        "add-matcher",
        "add-path",
        "debug",
        "echo",
        "endgroup",
        "error",
        "group",
        "notice",
        "remove-matcher",
        "save-state",
        "set-env",
        "set-output",
        "stop-commands",
        "warning",
    }
)
_ISSUE_LEVELS: dict[str, AnnotationLevel] = {
    "notice": "notice",
    "warning": "warning",
    "error": "failure",
}
_DATA_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%25", "%"))
_PROPERTY_ESCAPES = (("%0D", "\r"), ("%0A", "\n"), ("%3A", ":"), ("%2C", ","), ("%25", "%"))
_LEGACY_ESCAPES = (("%3B", ";"), ("%0D", "\r"), ("%0A", "\n"), ("%5D", "]"), ("%25", "%"))
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
MAX_PER_LEVEL_PER_STEP = 10
MAX_PER_JOB = 50
_MAX_MESSAGE = 4096


@dataclass(frozen=True)
class LogEntry:
    """One write to the job log. `text` may hold newlines: only its first line is timestamped.
    `step` is the number of the step that wrote it (what the web UI shows per step)."""

    timestamp: float
    text: str
    step: int = 0


@dataclass(frozen=True)
class Annotation:
    level: AnnotationLevel
    message: str
    title: str
    path: str
    start_line: int
    end_line: int
    start_column: int | None
    end_column: int | None
    step_number: int


@dataclass(frozen=True)
class WorkflowCommand:
    name: str
    properties: dict[str, str]
    data: str


def _unescape(text: str, table: tuple[tuple[str, str], ...]) -> str:
    for escaped, plain in table:
        text = text.replace(escaped, plain)
    return text


def _split_properties(
    text: str, separator: str, table: tuple[tuple[str, str], ...]
) -> dict[str, str]:
    properties: dict[str, str] = {}
    for item in filter(None, text.split(separator)):
        key, sep, value = item.partition("=")
        if key and sep and value:
            properties[key.lower()] = _unescape(value, table)
    return properties


def parse_command(line: str, registered: frozenset[str] | set[str]) -> WorkflowCommand | None:
    """The workflow command in `line`, or None when the runner would print it as output."""
    stripped = line.lstrip()
    if stripped.startswith("::"):
        end = stripped.find("::", 2)
        if end >= 0:
            name, _, props = stripped[2:end].partition(" ")
            if name.lower() in registered:
                return WorkflowCommand(
                    name.lower(),
                    _split_properties(props.strip(), ",", _PROPERTY_ESCAPES),
                    _unescape(stripped[end + 2 :], _DATA_ESCAPES),
                )
    start = line.find("##[")
    if start >= 0:
        end = line.find("]", start)
        if end >= 0:
            name, _, props = line[start + 3 : end].partition(" ")
            if name.lower() in registered:
                return WorkflowCommand(
                    name.lower(),
                    _split_properties(props, ";", _LEGACY_ESCAPES),
                    _unescape(line[end + 1 :], _LEGACY_ESCAPES),
                )
    return None


def _int_or_none(value: str | None) -> int | None:
    if value is None or not value.strip().isdigit():
        return None
    return int(value)


class JobConsole:
    """The log and annotations of one job, written the way the runner writes them."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self.offset = 0.0  # how far the runner's clock is ahead of the simulator's
        self.entries: list[LogEntry] = []
        self.annotations: list[Annotation] = []
        self._masks: set[str] = set()
        self._stop_token: str | None = None
        self._echo = False
        self._step = 0
        self._step_counts: Counter[AnnotationLevel] = Counter()

    def begin_step(self, number: int) -> None:
        self._step = number
        self._step_counts.clear()

    def mask(self, text: str) -> str:
        for value in sorted(self._masks, key=len, reverse=True):
            text = text.replace(value, "***")
        return text

    def write(self, text: str) -> None:
        """Runner-generated text (headers, markers): masked, never parsed for commands."""
        self.entries.append(LogEntry(self.now(), self.mask(text), self._step))

    def now(self) -> float:
        """The runner's clock: log timestamps and step times."""
        return self._clock() + self.offset

    def output(self, text: str) -> None:
        """What the step's process printed, split into lines as the runner reads them
        (`StreamReader.ReadLine`: at `\n`, `\r` and `\r\n`, never at other separators)."""
        for line in _LINE_BREAK.split(text.removesuffix("\n").removesuffix("\r")):
            self._output_line(line)

    def _output_line(self, line: str) -> None:
        """One line the step's process printed."""
        registered: set[str] | frozenset[str] = _REGISTERED
        if self._stop_token is not None:
            # Only the resume token is a command now; an empty token never resumes.
            registered = {self._stop_token.lower()} if self._stop_token else set()
        command = parse_command(line, registered) if ("::" in line or "##[" in line) else None
        if command is None:
            self.write(line)
        elif self._stop_token is not None:
            self._stop_token = None
            self.write(line)
        else:
            self._run(command, line)

    def issue(
        self, level: AnnotationLevel, message: str, properties: dict[str, str] | None = None
    ) -> None:
        """`ExecutionContext.AddIssue`: a `##[level]` log line and, within limits, an annotation."""
        properties = properties or {}
        message = self.mask(message)[:_MAX_MESSAGE]
        tag = {"notice": "notice", "warning": "warning", "failure": "error"}[level]
        self.write(f"##[{tag}]{message}")
        if (
            self._step_counts[level] >= MAX_PER_LEVEL_PER_STEP
            or len(self.annotations) >= MAX_PER_JOB
        ):
            return
        self._step_counts[level] += 1
        start_line = _int_or_none(properties.get("line")) or _int_or_none(properties.get("endline"))
        end_line = _int_or_none(properties.get("endline")) or start_line
        start_column = _int_or_none(properties.get("col")) if start_line else None
        end_column = _int_or_none(properties.get("endcolumn")) if start_line else None
        self.annotations.append(
            Annotation(
                level=level,
                message=message,
                title=self.mask(properties.get("title", "")),
                path=properties.get("file") or ".github",
                start_line=start_line or 1,
                end_line=end_line or start_line or 1,
                start_column=start_column,
                end_column=end_column if end_column is not None else start_column,
                step_number=self._step,
            )
        )

    def _run(self, command: WorkflowCommand, line: str) -> None:
        if self._echo and command.name not in _OMIT_ECHO:
            self.write(line)
        match command.name:
            case "stop-commands":
                self.write(line)
                self._stop_token = command.data
            case "add-mask":
                if command.data.strip():
                    if self._echo:
                        self.write("::add-mask::***")
                    self._masks.add(command.data)
                else:
                    self.issue(
                        "warning", "Can't add secret mask for empty string in ##[add-mask] command."
                    )
            case "notice" | "warning" | "error":
                self.issue(_ISSUE_LEVELS[command.name], command.data, command.properties)
            case "group":
                self.write(f"##[group]{command.data}")
            case "endgroup":
                self.write("##[endgroup]")
            case "echo":
                self._echo = command.data.strip().lower() == "on"
            case _:
                # debug (step debug is off), outputs, state, matchers: consumed silently.
                pass


def set_up_lines(job_name: str, runner_name: str, group_name: str, from_fork: bool) -> list[str]:
    """What the runner logs in a job's "Set up job" step (a fork's run gets no secrets)."""
    return [
        "Current runner version: '2.330.0'",
        f"Runner name: '{runner_name}'",
        f"Runner group name: '{group_name}'",
        "##[group]Operating System",
        "Ubuntu",
        "24.04.3",
        "LTS",
        "##[endgroup]",
        "##[group]Runner Image",
        "Image: ubuntu-24.04",
        "Version: 20251215.1.0",
        "##[endgroup]",
        "##[group]GITHUB_TOKEN Permissions",
        "Contents: read",
        "Metadata: read",
        "##[endgroup]",
        f"Secret source: {'None' if from_fork else 'Actions'}",
        "Prepare workflow directory",
        "Prepare all required actions",
        f"Complete job name: {job_name}",
    ]
