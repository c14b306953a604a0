"""The workflow-step client: make a claim, print its challenge line, exchange it for a token.

It runs inside a fork's pull-request job, where the log is public. So: the claim capability
(the exchange URL) is never printed, and the token is masked before anything could print it.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

import httpx

USER_AGENT = "fork-oidc-issuer-client/0.1"
LONG_POLL = 25

# A challenge line must be one notice command and nothing else: a hostile or broken issuer
# must not make this step run other workflow commands (set outputs, masks, env).
_CHALLENGE_LINE = re.compile(r"^::notice::fork-oidc-challenge [A-Za-z0-9_-]{22,128}$")


class ExitCode:
    """The process exit codes of ``issuer token``, documented in the README."""

    OK = 0
    USAGE = 2
    CLAIM_REFUSED = 3
    RUN_REJECTED = 4
    CLAIM_SPENT = 5
    TIMED_OUT = 6
    UNAVAILABLE = 7


class ClientError(Exception):
    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True)
class RunIdentity:
    repository: str
    run_id: str
    run_attempt: str | None
    event_name: str

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> RunIdentity:
        missing = [
            name
            for name in ("GITHUB_REPOSITORY", "GITHUB_RUN_ID", "GITHUB_EVENT_NAME")
            if not env.get(name)
        ]
        if missing:
            raise ClientError(
                f"{', '.join(missing)} not set: run this inside a GitHub Actions job",
                ExitCode.USAGE,
            )
        return cls(
            env["GITHUB_REPOSITORY"],
            env["GITHUB_RUN_ID"],
            env.get("GITHUB_RUN_ATTEMPT") or None,
            env["GITHUB_EVENT_NAME"],
        )


@dataclass(frozen=True)
class Claim:
    exchange_url: str
    challenge_line: str
    expires_at: int
    poll_interval: int


def _fix_for(error: str, description: str) -> str:
    hints = {
        "run_rejected": "the issuer will not vouch for this run",
        "claim_expired": "make a new claim and exchange it sooner (see ISSUER_CLAIM_TTL)",
        "claim_used": "a claim yields one token: make a new claim for another token",
        "claim_not_found": "the claim is unknown: pass the `claim` output of the claim step",
        "invalid_audience": "use an audience the issuer allows (ISSUER_ALLOWED_AUDIENCES)",
    }
    hint = hints.get(error)
    return f"{description} ({hint})" if hint else description


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
        return str(body.get("error", "")), str(body.get("error_description", ""))
    except ValueError:
        return "", f"the issuer answered {response.status_code}"


def _retry_after(response: httpx.Response, default: float) -> float:
    value = response.headers.get("retry-after", "")
    return float(value) if value.isdigit() else default


class WorkflowClient:
    def __init__(
        self,
        issuer_url: str,
        *,
        say: Callable[[str], None],
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer_url = issuer_url.rstrip("/")
        self._say = say
        self._http = http or httpx.Client(
            timeout=httpx.Timeout(10.0, read=LONG_POLL + 15), headers={"User-Agent": USER_AGENT}
        )
        self._sleep = sleep
        self._clock = clock

    def claim(self, run: RunIdentity, audience: str | None, timeout: float = 60) -> Claim:
        body: dict[str, Any] = {
            "repository": run.repository,
            "run_id": run.run_id,
            "event_name": run.event_name,
        }
        if run.run_attempt:
            body["run_attempt"] = run.run_attempt
        if audience:
            body["audience"] = audience
        response = self._post_retrying(f"{self.issuer_url}/claim", json=body, timeout=timeout)
        if response.status_code != 201:
            error, description = _error_of(response)
            raise ClientError(
                f"the issuer refused the claim: {_fix_for(error, description)}",
                ExitCode.CLAIM_REFUSED,
            )
        created = response.json()
        line = str(created.get("challenge_line", ""))
        if not _CHALLENGE_LINE.match(line):
            raise ClientError("the issuer sent a malformed challenge line", ExitCode.UNAVAILABLE)
        return Claim(
            str(created["exchange_url"]),
            line,
            int(created["expires_at"]),
            int(created.get("poll_interval", 2)),
        )

    def exchange(self, exchange_url: str, timeout: float) -> str:
        """Poll until the issuer hands out the token; progress is said, the URL never."""
        started = self._clock()
        deadline = started + timeout
        last_said = -1e9
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ClientError(
                    f"gave up after {timeout:.0f} s: the issuer has not seen the challenge line "
                    "in this run. Print it in a job that completes before this one (needs:), "
                    "or as a ::notice:: annotation",
                    ExitCode.TIMED_OUT,
                )
            wait = int(min(LONG_POLL, max(remaining - 1, 0)))
            asked = self._clock()
            response = self._post_retrying(
                exchange_url, params={"wait": str(wait)}, timeout=remaining
            )
            if response.status_code == 200:
                return str(response.json()["token"])
            if response.status_code == 202:
                body = response.json()
                if self._clock() - last_said >= 10:
                    elapsed = self._clock() - started
                    self._say(
                        f"waiting for the issuer: {body.get('error_description')}"
                        f" ... {elapsed:.0f} s"
                    )
                    last_said = self._clock()
                if self._clock() - asked < 1:
                    self._sleep(min(_retry_after(response, 2), max(remaining, 0)))
                continue
            error, description = _error_of(response)
            code = {
                "run_rejected": ExitCode.RUN_REJECTED,
                "claim_used": ExitCode.CLAIM_SPENT,
                "claim_expired": ExitCode.CLAIM_SPENT,
                "claim_not_found": ExitCode.CLAIM_SPENT,
            }.get(error, ExitCode.UNAVAILABLE)
            raise ClientError(
                f"the issuer refused the exchange: {_fix_for(error, description)}", code
            )

    def _post_retrying(self, url: str, *, timeout: float, **kwargs: Any) -> httpx.Response:
        """POST, retrying 5xx, 429 and network errors with backoff and ``Retry-After``."""
        deadline = self._clock() + timeout
        delay = 1.0
        while True:
            try:
                response = self._http.post(url, **kwargs)
                if response.status_code < 500 and response.status_code != 429:
                    return response
                _, description = _error_of(response)
                pause = _retry_after(response, delay)
                problem = description or f"status {response.status_code}"
            except httpx.HTTPError as exc:
                pause, problem = delay, f"the issuer could not be reached ({type(exc).__name__})"
            if self._clock() + pause >= deadline:
                raise ClientError(f"giving up: {problem}", ExitCode.UNAVAILABLE)
            self._say(f"{problem}; retrying in {pause:.0f} s")
            self._sleep(pause)
            delay = min(delay * 2, 30)


def mask_line(value: str) -> str:
    return f"::add-mask::{value}"


def write_output(path: str, name: str, value: str) -> None:
    """Append to $GITHUB_OUTPUT in its multi-line-safe form, with a delimiter not in value."""
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    while delimiter in value:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    with open(path, "a", encoding="utf-8") as output:
        output.write(f"{name}<<{delimiter}{os.linesep}{value}{os.linesep}{delimiter}{os.linesep}")
