"""What the step says: progress while it waits, and the cause and fix of every refusal.

Nothing here ever sees the claim id or a token: messages are built from the issuer's error
codes and descriptions, status codes and exception type names only.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from issuer.client.codes import ExitCode

_STILL_RUNNING = re.compile(r"still running: ([^)]*)\)")
# How the issuer says a relay slot was contested (issuer/oidc/relay.py, contested_description).
_CONTESTED = re.compile(r"relay slot .* was claimed more than once")

RELAY_PATTERN = (
    "the relay pattern (examples/two-job.yml): the exchanging job runs mode `token` with "
    "`relay-slot: SLOT`, and a parallel job without `needs:` runs mode `relay` with the same "
    "`relay-slot`"
)
CONTESTED_FIX = (
    "someone else claimed this run's relay slot too (a stranger racing the run for its "
    "token, or a claim retried after its answer was lost), so no claim on it gets a token. "
    "Re-run the workflow: a new attempt has fresh slots. If it keeps happening, tell the "
    "issuer's operator (the issuer logs contested slots)"
)


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
    "relay_contested": (ExitCode.RUN_REJECTED, CONTESTED_FIX),
    "run_rejected": (
        ExitCode.RUN_REJECTED,
        "the issuer vouches only for public `pull_request` runs that are still in progress: "
        "exchange the claim in the same run, before it completes",
    ),
    "claim_used": (
        ExitCode.CLAIM_SPENT,
        "a claim yields one token, and that token has expired: make a new claim (mode `claim` "
        "or `token`) for another one",
    ),
    "claim_expired": (
        ExitCode.CLAIM_SPENT,
        "exchange sooner after the claim (the issuer's ISSUER_CLAIM_TTL): put the exchange "
        "step right after the claim step, or start the relay job together with the "
        "exchanging job; then re-run the workflow",
    ),
    "invalid_claim": (
        ExitCode.CLAIM_SPENT,
        "pass the `claim` output of the claim step unchanged "
        "(`steps.<claim step id>.outputs.claim`, in the same job)",
    ),
    "claim_not_found": (
        ExitCode.CLAIM_SPENT,
        "pass the `claim` output of the claim step unchanged "
        "(`steps.<claim step id>.outputs.claim`, in the same job), to the issuer that made it",
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
    if error == "run_rejected" and _CONTESTED.search(description):
        fix = CONTESTED_FIX
    cause = description or f"it answered HTTP {status}"
    label = f" ({error})" if error else ""
    return Refusal(f"the issuer refused the {stage}{label}: {cause}. Fix: {fix}", exit_code)


def unreachable(problem: str, tries: int, waited: float) -> str:
    return (
        f"giving up after {tries} tries over {waited:.0f} s: {problem}. Fix: check `issuer-url` "
        "(scheme, host, port) and that the issuer is up; raise `timeout` to wait longer"
    )


def timed_out(timeout: float, last: str, relay: str | None = None) -> str:
    said = f" The issuer last said: {last}." if last else ""
    if relay is not None:
        fix = (
            f"run a parallel job (no `needs:` between the two) with mode `relay` and "
            f"`relay-slot: {relay}` (`issuer token relay --slot {relay}`) against the same "
            "issuer, and let it complete; or raise `timeout`"
        )
    else:
        fix = (
            f"use {RELAY_PATTERN} (within one job the line is seen only through the "
            "issuer's optional web-UI channel); or raise `timeout`"
        )
    return (
        f"timed out after {timeout:.0f} s: the issuer has not seen the challenge line in this "
        f"run.{said} Fix: {fix}"
    )


def relay_timed_out(timeout: float, slot: str) -> str:
    return (
        f"timed out after {timeout:.0f} s: no claim on relay slot {slot!r} of this run "
        f"attempt. Fix: in a parallel job of the same workflow, run mode `token` with "
        f"`relay-slot: {slot}` (`issuer token --relay {slot}`) against the same issuer; or "
        "raise `timeout`"
    )


def relay_progress(slot: str, elapsed: float) -> str:
    return (
        f"waiting for the exchanging job to claim relay slot {slot!r} "
        f"(`issuer token --relay {slot}`) ... {elapsed:.0f} s"
    )


def missing_claim() -> str:
    return (
        "no claim to exchange: the `claim` input (--claim, ISSUER_CLAIM) is empty or not a "
        "claim. A claim step masks its `claim` output, and GitHub drops job outputs that hold "
        "masked values, so a claim works only within its job. Fix: in the same job, pass "
        "`${{ steps.<claim step id>.outputs.claim }}`; across jobs, use " + RELAY_PATTERN
    )


def progress(description: str, elapsed: float, relay: str | None = None) -> str:
    """One waiting line: what the issuer waits for, and for how long so far."""
    done = (
        "challenge printed"
        if relay is None
        else f"claimed relay slot {relay!r} (the relay job prints the challenge)"
    )
    match = _STILL_RUNNING.search(description)
    if match:
        jobs = ", ".join(f"'{name.strip()}'" for name in match.group(1).split(",") if name)
        what = f"waiting for job {jobs} to finish so GitHub serves its log"
    elif description:
        what = f"waiting for GitHub to serve it to the issuer ({description})"
    else:
        what = "waiting for GitHub to serve it to the issuer"
    return f"{done}; {what} ... {elapsed:.0f} s"


# `issuer build`: the builder service's refusals (docs/builder.md, "Every refusal"). Its
# descriptions are fixed texts: the start of one picks the fix.
_TOKEN_FIXES = (
    (
        "the token has expired",
        "run the build right after the token step: a token lives only a few minutes",
    ),
    (
        "the token was already exchanged",
        "a token buys one builder: get a new token (another token step) for another build",
    ),
    (
        "the token's aud is not",
        "set the token step's `audience` to the builder service's audience (its "
        "BUILDER_AUDIENCE, by default its URL)",
    ),
    (
        "the token's issuer is not one",
        "ask the builder service's operator to trust this issuer (BUILDER_TRUSTED_ISSUERS)",
    ),
)


def exchange_refusal(
    status: int, error: str, description: str, *, project: str, retry_after: str
) -> Refusal:
    """The message that ends ``issuer build`` after the builder service refused the token."""
    cause = description or f"it answered HTTP {status}"
    said = f"the builder service refused the token exchange for project {project!r}"
    if error in ("access_denied", "invalid_target"):
        fix = (
            f"ask the operator of the builder service for a trust relationship of project "
            f"{project!r} that allows this repository and event (`issuer trust add --project "
            f"{project} ...`, docs/builder.md), or correct `project`"
        )
        return Refusal(f"{said} ({error}): {cause}. Fix: {fix}", ExitCode.NOT_TRUSTED)
    if status == 429:
        wait = f" (about {retry_after} s)" if retry_after.isdigit() else ""
        fix = (
            f"wait until one of the project's live builders is stopped or expires{wait} and "
            "re-run the job, or ask the operator to raise the relationship's `max_builders`"
        )
        return Refusal(
            f"{said}: the builder limit is reached: {cause}. Fix: {fix}", ExitCode.BUILDER_LIMIT
        )
    if error == "invalid_grant":
        fix = next(
            (fix for start, fix in _TOKEN_FIXES if description.startswith(start)),
            "pass the `token` output of this job's token step, made with the builder "
            "service's audience",
        )
        return Refusal(f"{said} (invalid_grant): {cause}. Fix: {fix}", ExitCode.TOKEN_REFUSED)
    label = f" ({error})" if error else ""
    fix = "check that `builder-url` is the builder service's URL and that the service is up"
    return Refusal(f"{said}{label}: {cause}. Fix: {fix}", ExitCode.BUILDER_UNAVAILABLE)


def build_refusal(status: int, error: str, description: str, *, context_size: int) -> Refusal:
    """The message that ends ``issuer build`` after its builder refused the build."""
    cause = description or f"it answered HTTP {status}"
    label = f" ({error})" if error else ""
    if status == 413:
        return Refusal(
            f"the builder refused the build context as too large{label}: {cause} (it was "
            f"{context_size} bytes packed). Fix: leave out what the build does not need with "
            ".dockerignore",
            ExitCode.CONTEXT_TOO_LARGE,
        )
    if status == 400:
        return Refusal(
            f"the builder refused the build{label}: {cause}. Fix: check the context, "
            "--file, --target and --build-arg",
            ExitCode.BUILD_FAILED,
        )
    if status == 401:
        fix = "the builder stopped or expired before the build: re-run the job"
    else:
        fix = "re-run the job; if it keeps happening, tell the builder service's operator"
    return Refusal(
        f"the builder did not take the build{label}: {cause}. Fix: {fix}",
        ExitCode.BUILDER_UNAVAILABLE,
    )


def builder_unreachable(what: str, problem: str) -> str:
    return (
        f"{what} could not be reached ({problem}). Fix: check `builder-url` (scheme, host, "
        "port) and that the builder service is up"
    )
