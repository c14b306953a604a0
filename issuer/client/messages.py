"""What the step says: progress while it waits, and the cause and fix of every refusal.

Nothing here ever sees the claim id or a token: messages are built from the issuer's error
codes and descriptions, status codes and exception type names only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from issuer.client.codes import ExitCode

_STILL_RUNNING = re.compile(r"still running: ([^)]*)\)")


@dataclass(frozen=True)
class Refusal:
    message: str
    exit_code: int


# error code -> (exit code, what to do about it)
_FIXES: dict[str, tuple[int, str]] = {
    "invalid_request": (
        ExitCode.CLAIM_REFUSED,
        "run the step in a workflow triggered by `pull_request`, with GITHUB_REPOSITORY, "
        "GITHUB_RUN_ID and GITHUB_RUN_ATTEMPT as the runner sets them",
    ),
    "invalid_audience": (
        ExitCode.CLAIM_REFUSED,
        "set `audience` to one the issuer allows (its operator lists them in "
        "ISSUER_ALLOWED_AUDIENCES), or leave it empty for the issuer's default",
    ),
    "request_too_large": (ExitCode.CLAIM_REFUSED, "send a shorter audience"),
    "run_rejected": (
        ExitCode.RUN_REJECTED,
        "the issuer vouches only for public `pull_request` runs that are still in progress: "
        "exchange the claim in the same run, before it completes",
    ),
    "claim_used": (
        ExitCode.CLAIM_SPENT,
        "a claim yields one token: make a new claim (mode `claim` or `token`) for another one",
    ),
    "claim_expired": (
        ExitCode.CLAIM_SPENT,
        "exchange sooner after the claim (the issuer's ISSUER_CLAIM_TTL), e.g. make the "
        "exchanging job `needs:` the claim job directly",
    ),
    "claim_not_found": (
        ExitCode.CLAIM_SPENT,
        "pass the `claim` output of the claim step unchanged "
        "(`needs.<claim job>.outputs.claim`), to the issuer that made it",
    ),
}


def refusal(stage: str, status: int, error: str, description: str) -> Refusal:
    """The message that ends the step after the issuer answered ``status`` ``error``."""
    exit_code, fix = _FIXES.get(
        error,
        (
            ExitCode.CLAIM_REFUSED if stage == "claim" else ExitCode.UNAVAILABLE,
            "check that `issuer-url` is this issuer's URL and that the issuer is up to date",
        ),
    )
    cause = description or f"it answered HTTP {status}"
    label = f" ({error})" if error else ""
    return Refusal(f"the issuer refused the {stage}{label}: {cause}. Fix: {fix}", exit_code)


def unreachable(problem: str, tries: int, waited: float) -> str:
    return (
        f"giving up after {tries} tries over {waited:.0f} s: {problem}. Fix: check `issuer-url` "
        "(scheme, host, port) and that the issuer is up; raise `timeout` to wait longer"
    )


def timed_out(timeout: float, last: str) -> str:
    said = f" The issuer last said: {last}." if last else ""
    return (
        f"timed out after {timeout:.0f} s: the issuer has not seen the challenge line in this "
        f"run.{said} Fix: print the line in a job that completes before this one (`needs:`), "
        "or rely on the ::notice:: annotation in an earlier step; or raise `timeout`"
    )


def progress(description: str, elapsed: float) -> str:
    """One waiting line: what the issuer waits for, and for how long so far."""
    match = _STILL_RUNNING.search(description)
    if match:
        jobs = ", ".join(f"'{name.strip()}'" for name in match.group(1).split(",") if name)
        what = (
            f"waiting for job {jobs} to finish so GitHub serves its log "
            "(or for its ::notice:: annotation)"
        )
    elif description:
        what = f"waiting for GitHub to serve it to the issuer ({description})"
    else:
        what = "waiting for GitHub to serve it to the issuer"
    return f"challenge printed; {what} ... {elapsed:.0f} s"
