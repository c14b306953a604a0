"""Challenge codes, and finding one where the client's own step printed it.

The workflow prints ``challenge_line(code)``, a ``::notice::`` workflow command; the runner
consumes it and writes ``##[notice]fork-oidc-challenge CODE`` to the log. The same log line
can be produced by text a stranger wrote: the runner still parses the legacy ``##[name]data``
form *anywhere* in a line, and a message with ``%0A`` continues on lines that carry no
timestamp of the runner's, so they can carry a forged one. What text cannot forge is what
the runner writes around a step and what the jobs API says of it (docs/threat-model.md):

- lines are what the runner splits (``\\n`` and ``\\r`` only); each starts with the
  runner's timestamp, and the runner's own timestamps never go back in time;
- each step begins with the runner's header group (``##[group]Run ...`` up to
  ``##[endgroup]``), written before the step's process starts: the script it runs (each line
  echoed in cyan) or the action's inputs (``with:``);
- the jobs API gives each step's start and end (whole seconds).

A code counts (:class:`LogScan`) only on a line that is exactly the runner's
``##[notice]fork-oidc-challenge CODE`` (no colour, never the bare payload or the script's
echo), written at least a second after its step began and before it ended, after that
step's header (the first header group written around the step's start that no earlier step
took), which must name the client (a script line that runs ``issuer token``, or the action
input ``issuer-url:`` set to this issuer), with no other step's header in between, and with
no later line of the log stamped earlier (a forged timestamp).
"""

from __future__ import annotations

import bisect
import codecs
import math
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from issuer.github.facts import JobFacts

PAYLOAD_PREFIX = "fork-oidc-challenge "
NOTICE = "##[notice]"
HEADER = "##[group]Run "
END_GROUP = "##[endgroup]"
SCRIPT_ECHO = "\x1b[36;1m"  # the runner echoes each line of a ``run:`` script in bright cyan

# CSI sequences (colours, cursor moves) and the two-byte escapes; see ECMA-48.
_ANSI = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b[@-Z\\-_]")
_CODE = re.compile(r"^[A-Za-z0-9_-]{22,}$")
_STAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d{1,7}))?Z ")
# A script line that runs the client: `issuer token ...`, `".../bin/issuer" token ...`,
# `"$issuer" token ...` (the action's own script).
_INVOCATION = re.compile(r"""(?:^|[\s/"'${])issuer[}"']*\s+token(?:\s|$)""")

MAX_LINE = 64 * 1024  # longer lines are cut: no challenge, header or stamp is that long
MAX_HEADER_LINES = 512  # of one header group, kept to decide whether it names the client
# A code counts only once its step has run this long (the jobs API's times are whole
# seconds): the second in which a step begins is shared with the end of the one before.
START_MARGIN = 1
END_MARGIN = 1


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


def clean(raw: str) -> str:
    return _ANSI.sub("", raw).rstrip("\r\n").rstrip()


def logged_code(text: str) -> str | None:
    """The code if ``text`` (a log line without its timestamp) is exactly what the runner
    writes for the client's ``::notice::``; anything around it (colour, spaces) disqualifies."""
    if not text.startswith(NOTICE + PAYLOAD_PREFIX):
        return None
    code = text[len(NOTICE) + len(PAYLOAD_PREFIX) :]
    return code if looks_like_code(code) else None


def header_names_client(lines: Sequence[str], issuer_url: str | None) -> bool:
    """Whether a step's header group (its raw lines, timestamps removed) shows the step runs
    the client: a cyan script line invoking ``issuer token``, or the action's input
    ``issuer-url:`` set to this issuer."""
    url_line = f"  issuer-url: {issuer_url.rstrip('/')}" if issuer_url else None
    for line in lines:
        if line.startswith(SCRIPT_ECHO) and _INVOCATION.search(clean(line)):
            return True
        if url_line is not None and line.rstrip("/ ") == url_line:
            return True
    return False


# The runner's own steps: they write no `##[group]Run ` header of their own.
RUNNER_STEPS = frozenset({"Set up job", "Complete job", "Initialize containers", "Stop containers"})


@dataclass(frozen=True)
class StepWindow:
    """A step as the jobs API shows it: its number, whole-second start and end, and name."""

    number: int
    started_at: int
    completed_at: int
    name: str = ""

    @property
    def has_header(self) -> bool:
        """Whether the runner begins the step with a header group: every step of the
        workflow's own, not the runner's set-up and clean-up, nor an action's post step."""
        return self.name not in RUNNER_STEPS and not self.name.startswith("Post ")


@dataclass
class _Header:
    position: int
    time: float
    names_client: bool


@dataclass
class _Candidate:
    code: str
    position: int
    time: float


@dataclass
class LogScan:
    """Scans a job log fed in chunks, in bounded memory, for the codes in ``wanted`` printed
    by the client's own step (see the module's rule). Only ``wanted`` codes are kept."""

    wanted: frozenset[str]
    steps: Sequence[StepWindow]
    issuer_url: str | None = None
    lines: int = 0  # timestamped lines read
    _decoder: codecs.IncrementalDecoder = field(
        default_factory=lambda: codecs.getincrementaldecoder("utf-8")(errors="replace")
    )
    _partial: str = ""
    _started: bool = False
    _group: list[str] | None = None  # the open header group's lines
    _group_start: tuple[int, float] = (0, 0.0)
    _group_stamps: float = 0.0  # the open group's latest stamp, or NaN once one went back
    _step_headers: dict[int, _Header] = field(default_factory=dict)
    _last_foreign: int = -1  # position of the latest header that does not name the client
    _candidates: list[_Candidate] = field(default_factory=list)
    _latest: float = float("-inf")  # the latest candidate's time
    _seconds: dict[str, int] = field(default_factory=dict)
    _starts: list[int] = field(default_factory=list)  # of ``steps``, in order

    @classmethod
    def of_job(cls, job: JobFacts, wanted: frozenset[str], issuer_url: str | None) -> LogScan:
        """The scan of ``job``'s log, with its steps as the jobs API shows them."""
        steps = [StepWindow(s.number, s.started_at, s.completed_at, s.name) for s in job.steps]
        return cls(wanted, steps, issuer_url)

    def __post_init__(self) -> None:
        self.steps = sorted(self.steps, key=lambda step: (step.started_at, step.number))
        self._starts = [step.started_at for step in self.steps]

    def _steps_started(self, after: float, until: float) -> Sequence[StepWindow]:
        """The steps that began in (after, until]: a few, however many headers a log forges."""
        return self.steps[
            bisect.bisect_right(self._starts, after) : bisect.bisect_right(self._starts, until)
        ]

    def feed(self, data: bytes) -> None:
        text = self._partial + self._decoder.decode(data)
        if not self._started and text:
            text = text.removeprefix("\ufeff")
            self._started = True
        pieces = text.replace("\r", "\n").split("\n")
        self._partial = pieces.pop()[:MAX_LINE]
        for piece in pieces:
            self._line(piece[:MAX_LINE])

    def finish(self) -> dict[str, int]:
        """Each wanted code that counts, with the line (1-based, timestamped lines) where it
        first does."""
        tail = self._partial + self._decoder.decode(b"", final=True)
        self._partial = ""
        if tail:
            self._line(tail[:MAX_LINE])
        found: dict[str, int] = {}
        for candidate in self._candidates:
            found.setdefault(candidate.code, candidate.position)
        return found

    def _time(self, line: str) -> tuple[float, int] | None:
        """The runner's timestamp at the start of ``line`` (epoch seconds) and where its text
        starts, or None for a continuation line."""
        if len(line) > 28 and line[19] == "." and line[27] == "Z" and line[28] == " ":
            second, fraction, start = line[:19], line[20:27], 29
        else:
            match = _STAMP.match(line)
            if match is None:
                return None
            second, fraction, start = match[1], match[2] or "0", match.end()
        epoch = self._seconds.get(second)
        if epoch is None:
            try:
                epoch = int(datetime.fromisoformat(second).replace(tzinfo=UTC).timestamp())
            except ValueError:
                return None
            if len(self._seconds) > 4096:
                self._seconds.clear()
            self._seconds[second] = epoch
        if not fraction.isdigit():
            return None
        return epoch + int(fraction) / 10 ** len(fraction), start

    def _line(self, line: str) -> None:
        stamped = self._time(line)
        if stamped is None:
            return  # a continuation of a multi-line message: never a line of its own
        time, start = stamped
        self.lines += 1
        if time < self._latest:
            # A line stamped before an earlier candidate: one of them carries a forged stamp.
            self._candidates = [c for c in self._candidates if c.time <= time]
            self._latest = max((c.time for c in self._candidates), default=float("-inf"))
        text = line[start:]
        if self._group is not None:
            # The runner writes a header at once: a line stamped before the one above it
            # (a forged stamp, in a multi-line `env:` or `with:` value) voids the header.
            self._group_stamps = time if time >= self._group_stamps else math.nan
            if text == END_GROUP:
                self._close_group()
                return
            if not text.startswith(HEADER):
                if len(self._group) < MAX_HEADER_LINES:
                    self._group.append(text)
                return  # inside a header: nothing here is a step's output
            self._close_group()
        if text.startswith(HEADER):
            self._group = [text]
            self._group_start = (self.lines, time)
            self._group_stamps = time
            return
        if not self.wanted or not text.startswith(NOTICE):
            return
        code = logged_code(text)
        if code is not None and code in self.wanted and self._printed_by_client(time):
            self._candidates.append(_Candidate(code, self.lines, time))
            self._latest = max(self._latest, time)

    def _close_group(self) -> None:
        assert self._group is not None
        position, time = self._group_start
        in_order = not math.isnan(self._group_stamps)
        names_client = in_order and header_names_client(self._group, self.issuer_url)
        header = _Header(position, time, names_client)
        self._group = None
        if not header.names_client:
            self._last_foreign = position
        # The header a step begins with: the first one written around its start that no
        # earlier step took. Steps begin in order, each with its header before any of its
        # output, so a header forged by a step's output comes after that step's own.
        for step in self._steps_started(time - START_MARGIN, time + START_MARGIN):
            if step.has_header and step.number not in self._step_headers:
                self._step_headers[step.number] = header
                return  # one header begins one step

    def _printed_by_client(self, time: float) -> bool:
        for step in self._steps_started(float("-inf"), time - START_MARGIN):
            if time >= step.completed_at + END_MARGIN:
                continue
            header = self._step_headers.get(step.number)
            if header is not None and header.names_client and header.position > self._last_foreign:
                return True
        return False


def codes_in_log(
    log: str | bytes,
    steps: Sequence[StepWindow],
    wanted: Iterable[str],
    issuer_url: str | None = None,
) -> dict[str, int]:
    """:class:`LogScan` over a whole log at once (tests, small logs)."""
    scan = LogScan(frozenset(wanted), steps, issuer_url)
    scan.feed(log.encode() if isinstance(log, str) else log)
    return scan.finish()


def codes_in_lines(lines: list[str], issuer_url: str | None = None) -> set[str]:
    """Challenge codes in one step's live lines (as the web UI serves them: one entry each,
    maybe timestamped). GitHub itself keeps the steps apart there, so the log's rule applies
    without times: the step's first line opens a header naming the client, every header
    since names it too, and a code counts only outside a header, exactly as logged."""
    found: set[str] = set()
    group: list[str] | None = None
    client = False
    for index, raw in enumerate(lines):
        first = raw.replace("\r", "\n").split("\n", 1)[0]
        stamp = _STAMP.match(first)
        text = first[stamp.end() :] if stamp else first
        if group is not None:
            if text != END_GROUP:
                if len(group) < MAX_HEADER_LINES:
                    group.append(text)
                continue
            client = header_names_client(group, issuer_url) and (client or index == len(group))
            group = None
            continue
        if text.startswith(HEADER):
            if index > 0 and not client:
                break  # the step did not begin with the client's header: nothing counts
            group = [text]
            continue
        if index == 0:
            break
        code = logged_code(text) if client else None
        if code is not None:
            found.add(code)
    return found
