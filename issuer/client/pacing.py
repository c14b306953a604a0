"""When the challenge line may be printed.

The issuer counts a code only if the log stamps its line at least a second after the
client's step began, as the jobs API gives that start in whole seconds: the second in which a
step begins is shared with the end of the step before it, whose output (a stranger's text,
maybe) could otherwise pass for this step's (docs/threat-model.md). A step begins before its
process does, so a line printed two seconds after this process started is always late enough.
"""

from __future__ import annotations

import time
from collections.abc import Callable

STEP_MARGIN = 2.0  # seconds after the process started
_STARTED = time.monotonic()  # this module is imported as the client starts


def print_challenge(
    line: str,
    *,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """Print the challenge line on a line of its own, no sooner than the margin allows."""
    wait = _STARTED + STEP_MARGIN - clock()
    if wait > 0:
        sleep(wait)
    print(line, flush=True)
