"""The build's answer, one JSON object a line as Docker streams a build, printed as it comes.

``{"stream": TEXT}`` is output (text arrives in pieces: a line may span several objects, one
object may hold several lines); a last ``{"error": ..., "errorDetail": {"message": ...}}``
says the build failed, a last ``{"aux": {"ID", "digest", "pushed"}}`` that it succeeded.
Each line is printed with the time since the build started and the Dockerfile step it
belongs to (the last ``STEP n/m: ...`` line seen), so that a failure can name its step.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

_STEP = re.compile(r"^(?:STEP|Step) (\d+)/(\d+) ?: ?(.*)$")
_COMMIT = re.compile(r"^COMMIT(?:\s|$)")  # buildah's last phase: the image is written
_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
_REFERENCE = re.compile(r"^[A-Za-z0-9._:/@-]{1,512}$")
MAX_LINE = 64 * 1024  # a longer piece of output without a newline is printed as it is


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    digest: str
    pushed: str | None


class BuildFailed(Exception):
    """The builder said the build failed (its last line was an error)."""

    def __init__(self, step: str | None, message: str) -> None:
        where = f"at {step}" if step else "before its first step"
        super().__init__(f"the build failed {where}: {message}")
        self.step = step
        self.message = message


class StreamBroken(Exception):
    """The answer is not a build stream, or ended before it said how the build went."""


def one_line(value: object, limit: int = 2000) -> str:
    """Text as one printable line: no newline may start a workflow command."""
    return " ".join(str(value).split())[:limit]


class StreamPrinter:
    """Feeds on the stream's lines, prints the build's output, keeps the outcome."""

    def __init__(
        self, say: Callable[[str], None], clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._say = say
        self._clock = clock
        self._started = clock()
        self._pending = ""
        self.step: str | None = None
        """The last ``STEP n/m: ...`` line seen."""
        self._label = ""
        self.error: str | None = None
        self.result: BuildResult | None = None

    def feed(self, line: str) -> None:
        """One line of the answer; raises StreamBroken if it is not a build message."""
        if not line.strip():
            return
        try:
            message = json.loads(line)
        except ValueError:
            raise StreamBroken("the builder sent a line that is not JSON") from None
        if not isinstance(message, dict):
            raise StreamBroken("the builder sent a line that is not a JSON object")
        if isinstance(message.get("stream"), str):
            self._text(message["stream"])
        elif isinstance(message.get("status"), str):
            self._text(message["status"] + "\n")
        if "error" in message or "errorDetail" in message:
            self._error(message)
        elif isinstance(message.get("aux"), dict) and "digest" in message["aux"]:
            self.result = _result(message["aux"])

    def finish(self) -> BuildResult:
        """The outcome once the answer ended; raises BuildFailed or StreamBroken."""
        self._flush()
        if self.error is not None:
            raise BuildFailed(self.step, self.error)
        if self.result is None:
            raise StreamBroken("the build stream ended before the builder said how the build went")
        return self.result

    def _error(self, message: dict[str, object]) -> None:
        detail = message.get("errorDetail")
        text = detail.get("message") if isinstance(detail, dict) else None
        self.error = one_line(text or message.get("error") or "(no message)")
        self._flush()
        self._print(f"error: {self.error}")

    def _text(self, text: str) -> None:
        self._pending += text.replace("\r\n", "\n").replace("\r", "\n")
        *lines, self._pending = self._pending.split("\n")
        for line in lines:
            self._line(line)
        if len(self._pending) > MAX_LINE:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            self._line(self._pending)
            self._pending = ""

    def _line(self, line: str) -> None:
        step = _STEP.match(line.strip())
        if step:
            self.step = one_line(line.strip(), 200)
            self._label = f"STEP {step.group(1)}/{step.group(2)}"
            self._say(f"{self._elapsed()}  {self.step}")
        elif _COMMIT.match(line.strip()):
            self._label = "COMMIT"
            self._say(f"{self._elapsed()}  {one_line(line.strip(), 200)}")
        else:
            self._print(line.rstrip())

    def _print(self, text: str) -> None:
        label = f"{self._label} | " if self._label else ""
        self._say(f"{self._elapsed()}  {label}{text}")

    def _elapsed(self) -> str:
        return f"{self._clock() - self._started:7.1f}s"


def _result(aux: dict[str, object]) -> BuildResult:
    image_id, digest, pushed = aux.get("ID"), aux.get("digest"), aux.get("pushed")
    if not isinstance(digest, str) or not _DIGEST.match(digest):
        raise StreamBroken("the builder's result names no valid image digest")
    if not isinstance(image_id, str) or not _DIGEST.match(image_id):
        raise StreamBroken("the builder's result names no valid image ID")
    if pushed is not None and (not isinstance(pushed, str) or not _REFERENCE.match(pushed)):
        raise StreamBroken("the builder's result names a malformed pushed reference")
    return BuildResult(image_id, digest, pushed)
