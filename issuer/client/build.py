"""``issuer build``: trade the workflow's OIDC token for an ephemeral builder and build there.

The order is chosen so that nothing is wasted and nothing is left behind: the context is
packed first (a context over the limit is refused before the token is spent or a builder
started); then the token is exchanged (RFC 8693) for a build token and a builder; the build
streams its output as it runs; the image's OCI archive is saved when asked; and the builder
is stopped (``DELETE {endpoint}``) whatever happened, a failure or an interruption (a
cancelled job's SIGINT or SIGTERM) included, and the step says whether it was.
"""

from __future__ import annotations

import contextlib
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

from issuer.client.builderclient import BuilderClient, BuildOptions, Grant, commands_stopped
from issuer.client.codes import ClientError, ExitCode
from issuer.client.context import ContextTooLarge, PackedContext, pack
from issuer.client.stream import BuildResult, StreamPrinter
from issuer.client.workflow import mask_line

Say = Callable[[str], None]


@dataclass(frozen=True)
class BuildStep:
    builder_url: str
    project: str
    context: Path
    options: BuildOptions
    output: Path | None
    max_context: int
    timeout: float = 60.0
    """Seconds to keep trying while the builder service is unreachable or unavailable."""


class Interrupted(Exception):
    def __init__(self, signum: int) -> None:
        self.signum = signum
        super().__init__(f"interrupted by {signal.Signals(signum).name}")


class Interrupts:
    """SIGINT and SIGTERM (how a runner cancels a step) raise :class:`Interrupted`, so that
    the builder is stopped on the way out. While held (the exchange, which may start a
    builder; the stop itself) they wait, and are raised by :meth:`resume`."""

    def __init__(self) -> None:
        self._holding = 0
        self._raised = False
        self._pending: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> Interrupts:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)  # type: ignore[arg-type]

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._holding or self._raised:
            self._pending = self._pending or signum
            return
        self._raised = True  # one interruption is enough: the next ones only wait
        raise Interrupted(signum)

    @contextlib.contextmanager
    def held(self) -> Iterator[None]:
        self._holding += 1
        try:
            yield
        finally:
            self._holding -= 1

    def resume(self) -> None:
        """Raise the interruption that came while held, if one did."""
        if self._pending is not None and not self._raised:
            self._raised = True
            raise Interrupted(self._pending)

    def sleep(self, seconds: float) -> None:
        """A pause that an interruption ends, even while held (nothing is started then)."""
        holding, self._holding = self._holding, 0
        try:
            self.resume()
            time.sleep(seconds)
        finally:
            self._holding = holding


def build(
    step: BuildStep,
    token: str,
    *,
    say: Say,
    warn: Say,
    actions: bool,
    set_output: Callable[[str, str], None],
    interrupts: Interrupts,
    client: BuilderClient | None = None,
) -> BuildResult:
    """The whole step; raises ClientError (or Interrupted) once the builder was stopped."""
    try:
        packed = pack(step.context, step.options.dockerfile, step.max_context)
    except ContextTooLarge as error:
        raise ClientError(
            f"the build context {str(step.context)!r} is over {error.limit} bytes packed; "
            "nothing was sent and no builder was started. Fix: leave out what the build does "
            "not need with .dockerignore, or raise --max-context",
            ExitCode.CONTEXT_TOO_LARGE,
        ) from None
    client = client or BuilderClient(step.builder_url, say=say, sleep=interrupts.sleep)
    grant: Grant | None = None
    try:
        left_out = f"; left out (not a file, directory or link): {', '.join(packed.skipped)}"
        say(
            f"context {str(step.context)!r}: {packed.members} "
            f"{'entry' if packed.members == 1 else 'entries'}, {packed.size} bytes packed"
            f"{left_out if packed.skipped else ''}"
        )
        with interrupts.held():  # an answer lost to a signal would leave a builder running
            grant = client.exchange(token, step.project, step.timeout)
            if actions:
                say(mask_line(grant.build_token))  # first, before anything could print it
        interrupts.resume()
        kind = "ephemeral" if grant.ephemeral else "not ephemeral"
        cache = "with a cache" if grant.cache else "no cache"
        say(
            f"builder {grant.builder_id} ready for project {step.project!r} ({kind}, {cache}; "
            f"it stops by itself at {grant.expiry})"
        )
        return _build_on(grant, step, packed, client, say, actions, set_output)
    finally:
        if grant is not None:
            with interrupts.held():
                _stop(grant, client, say, warn)
        packed.close()
        client.close()
        interrupts.resume()


def _build_on(
    grant: Grant,
    step: BuildStep,
    packed: PackedContext,
    client: BuilderClient,
    say: Say,
    actions: bool,
    set_output: Callable[[str, str], None],
) -> BuildResult:
    say(f"building {step.options.dockerfile} on builder {grant.builder_id}")
    with commands_stopped(say, actions):
        result = client.build(grant, packed, step.options, StreamPrinter(say))
    say(f"image built: digest {result.digest}, ID {result.image_id}")
    say(
        f"pushed to {result.pushed}"
        if result.pushed
        else "not pushed (the trust relationship names no `push`)"
    )
    set_output("digest", result.digest)
    set_output("image-id", result.image_id)
    set_output("pushed", result.pushed or "")
    if step.output is not None:
        size = client.save_image(grant, step.output, result.digest)
        say(f"OCI archive saved to {str(step.output)!r} ({size} bytes)")
    return result


def _stop(grant: Grant, client: BuilderClient, say: Say, warn: Say) -> None:
    why_not = client.stop(grant)
    if why_not is None:
        say(f"builder {grant.builder_id} stopped: its storage is gone")
    else:
        warn(
            f"builder {grant.builder_id} could not be stopped: {why_not}. It stops by itself "
            f"at {grant.expiry}, and counts against the project's builders until then"
        )
