"""The workflow-step client: make a claim, print its challenge line, exchange it for a token.

It runs inside a fork's pull-request job, where the log is public. So: the claim capability
(the claim id) is never printed and travels only as the exchange's bearer, never in a URL;
the token is masked before anything could print it.

Every attempt at a claim carries one ``Idempotency-Key``: a retry after a lost answer gets
the same claim back instead of making a second one (which would contest a relay slot).

In the relay pattern the exchanging job claims a relay slot and never prints its challenge;
a parallel job fetches the slot's challenge line (:meth:`WorkflowClient.relay`), prints it
and completes.
"""

from __future__ import annotations

import os
import re
import secrets
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from issuer.client import messages
from issuer.client.codes import ClientError, ExitCode

__all__ = [
    "SLOT",
    "ClientError",
    "ExitCode",
    "RunIdentity",
    "WorkflowClient",
    "mask_line",
    "write_output",
]

USER_AGENT = "fork-oidc-issuer-client/0.1"
LONG_POLL = 10  # seconds per long poll: also how often the step says how long it waited

# A challenge line must be one notice command and nothing else: a hostile or broken issuer
# must not make this step run other workflow commands (set outputs, masks, env).
_CHALLENGE_LINE = re.compile(r"^::notice::fork-oidc-challenge [A-Za-z0-9_-]{22,128}$")
SLOT = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
CLAIM_ID = re.compile(r"^[A-Za-z0-9_-]{43}$")
_DIGITS = re.compile(r"^[1-9][0-9]{0,18}$")


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

    def relay_path(self, slot: str) -> str:
        """The path of the slot's ``GET /relay``; raises ClientError for a malformed run."""
        owner, _, repo = self.repository.partition("/")
        attempt = self.run_attempt or ""
        names = re.compile(r"[A-Za-z0-9._-]+")
        if not names.fullmatch(owner) or not names.fullmatch(repo) or repo in (".", ".."):
            raise ClientError(
                "GITHUB_REPOSITORY is not OWNER/REPO: run this inside a GitHub Actions job",
                ExitCode.USAGE,
            )
        if not _DIGITS.match(self.run_id) or not _DIGITS.match(attempt):
            raise ClientError(
                "GITHUB_RUN_ID and GITHUB_RUN_ATTEMPT must be set, in digits, for the relay: "
                "run this inside a GitHub Actions job",
                ExitCode.USAGE,
            )
        return f"/relay/{owner}/{repo}/runs/{self.run_id}/attempts/{attempt}/{slot}"


@dataclass(frozen=True)
class Claim:
    claim_id: str = field(repr=False)  # the capability: never printed
    exchange_url: str
    challenge_line: str
    expires_at: int
    poll_interval: int


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
        return _one_line(body.get("error", "")), _one_line(body.get("error_description", ""))
    except (ValueError, AttributeError):
        return "", ""


def _one_line(value: object, limit: int = 400) -> str:
    """The issuer's text as one printable line: no newline may start a workflow command."""
    return " ".join(str(value).split())[:limit]


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
            timeout=httpx.Timeout(10.0, read=LONG_POLL + 15),
            headers={"User-Agent": USER_AGENT},
            # Drop idle connections before any server would: one closed under a reused
            # connection can lose an exchange's answer, and with it the claim's one token.
            # (A lost answer no longer loses the token: the retry gets it again.)
            limits=httpx.Limits(keepalive_expiry=2.0),
        )
        self._sleep = sleep
        self._clock = clock

    def claim(
        self,
        run: RunIdentity,
        audience: str | None,
        timeout: float = 60,
        *,
        relay: str | None = None,
    ) -> Claim:
        """Make the claim; with ``relay``, on that relay slot (another job prints its line)."""
        body: dict[str, Any] = {
            "repository": run.repository,
            "run_id": run.run_id,
            "event_name": run.event_name,
        }
        if run.run_attempt:
            body["run_attempt"] = run.run_attempt
        if audience:
            body["audience"] = audience
        if relay is not None:
            if not run.run_attempt:
                raise ClientError(
                    "GITHUB_RUN_ATTEMPT not set, and a relay slot is one attempt's: run this "
                    "inside a GitHub Actions job",
                    ExitCode.USAGE,
                )
            body["relay"] = relay
        # One key for every retry of this claim: the issuer answers a retry with the claim
        # the first request made.
        attempt_key = {"Idempotency-Key": secrets.token_urlsafe(24)}
        response = self._post_retrying(
            f"{self.issuer_url}/claim", json=body, headers=attempt_key, timeout=timeout
        )
        if response.status_code != 201:
            raise _refused("claim", response)
        try:
            created = response.json()
            line = str(created.get("challenge_line", ""))
            claim = Claim(
                str(created["claim_id"]),
                str(created["exchange_url"]),
                line,
                int(created["expires_at"]),
                int(created.get("poll_interval", 2)),
            )
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ClientError(
                "the issuer's answer to the claim was malformed. Fix: check that `issuer-url` "
                "points at a fork OIDC issuer",
                ExitCode.UNAVAILABLE,
            ) from None
        if not _CHALLENGE_LINE.match(line):
            raise ClientError(
                "the issuer sent a malformed challenge line; it was not printed. Fix: check "
                "that `issuer-url` points at a fork OIDC issuer",
                ExitCode.UNAVAILABLE,
            )
        if not CLAIM_ID.match(claim.claim_id):
            raise ClientError(
                "the issuer's answer to the claim held no usable claim id. Fix: check that "
                "`issuer-url` points at a fork OIDC issuer that is up to date",
                ExitCode.UNAVAILABLE,
            )
        if claim.exchange_url != self.exchange_url:
            # The claim id goes to the exchange URL as a bearer: only to this issuer's own.
            raise ClientError(
                "the issuer handed out an exchange URL other than its own `/exchange`. Fix: set "
                "`issuer-url` to the issuer's URL exactly as its operator configured "
                "ISSUER_URL",
                ExitCode.UNAVAILABLE,
            )
        return claim

    def relay(self, run: RunIdentity, slot: str, timeout: float) -> str:
        """The challenge line of the claim on relay slot ``slot`` of this run's attempt, once
        the exchanging job made it (long polls meanwhile). Refusals raise ClientError."""
        url = self.issuer_url + run.relay_path(slot)
        started = self._clock()
        deadline = started + timeout
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ClientError(messages.relay_timed_out(timeout, slot), ExitCode.TIMED_OUT)
            wait = int(min(LONG_POLL, max(remaining - 1, 0)))
            asked = self._clock()
            response = self._request_retrying(
                "GET", url, params={"wait": str(wait)}, timeout=remaining
            )
            if response.status_code == 200:
                return _relayed_line(response)
            if response.status_code != 202:
                raise _refused("relay", response)
            self._say(messages.relay_progress(slot, self._clock() - started))
            if self._clock() - asked < 1:
                pause = min(_retry_after(response, 2), max(deadline - self._clock(), 0))
                self._sleep(pause)

    @property
    def exchange_url(self) -> str:
        return f"{self.issuer_url}/exchange"

    def exchange(self, claim_id: str, timeout: float, *, relay: str | None = None) -> str:
        """Poll until the issuer hands out the token; progress is said, the claim never. A
        retry after a lost answer gets the same token. ``relay``: the claim's relay slot,
        for what the waiting says."""
        bearer = {"Authorization": f"Bearer {claim_id}"}
        started = self._clock()
        deadline = started + timeout
        last = ""
        while True:
            remaining = deadline - self._clock()
            if remaining <= 0:
                raise ClientError(messages.timed_out(timeout, last, relay), ExitCode.TIMED_OUT)
            wait = int(min(LONG_POLL, max(remaining - 1, 0)))
            asked = self._clock()
            response = self._post_retrying(
                self.exchange_url, params={"wait": str(wait)}, headers=bearer, timeout=remaining
            )
            if response.status_code == 200:
                return _token_of(response)
            if response.status_code != 202:
                raise _refused("exchange", response)
            _, last = _error_of(response)
            self._say(messages.progress(last, self._clock() - started, relay))
            if self._clock() - asked < 1:
                pause = min(_retry_after(response, 2), max(deadline - self._clock(), 0))
                self._sleep(pause)

    def _post_retrying(self, url: str, *, timeout: float, **kwargs: Any) -> httpx.Response:
        return self._request_retrying("POST", url, timeout=timeout, **kwargs)

    def _request_retrying(
        self, method: str, url: str, *, timeout: float, **kwargs: Any
    ) -> httpx.Response:
        """Send, retrying 5xx, 429 and network errors with backoff and ``Retry-After``."""
        started = self._clock()
        deadline = started + timeout
        delay = 1.0
        tries = 0
        while True:
            tries += 1
            try:
                response = self._http.request(method, url, **kwargs)
                if response.status_code < 500 and response.status_code != 429:
                    return response
                error, description = _error_of(response)
                pause = _retry_after(response, delay)
                problem = f"the issuer answered {response.status_code} {error}".rstrip()
                if description:
                    problem += f": {description}"
            except httpx.HTTPError as exc:
                # The exception's text can hold the URL, which may be the claim: never print it.
                pause = delay
                problem = f"the issuer could not be reached ({type(exc).__name__})"
            if self._clock() + pause >= deadline:
                raise ClientError(
                    messages.unreachable(problem, tries, self._clock() - started),
                    ExitCode.UNAVAILABLE,
                )
            self._say(f"{problem}; retrying in {pause:.0f} s (try {tries})")
            self._sleep(pause)
            delay = min(delay * 2, 30)


def _refused(stage: str, response: httpx.Response) -> ClientError:
    error, description = _error_of(response)
    found = messages.refusal(stage, response.status_code, error, description)
    return ClientError(found.message, found.exit_code)


def _relayed_line(response: httpx.Response) -> str:
    try:
        body = response.json()
        line, code = str(body["challenge_line"]), str(body["challenge_code"])
    except (ValueError, KeyError, TypeError):
        line, code = "", ""
    # Only a challenge line of the exact shape is ever printed: see _CHALLENGE_LINE.
    if not _CHALLENGE_LINE.match(line) or not line.endswith(f" {code}"):
        raise ClientError(
            "the issuer's answer to the relay was malformed; nothing was printed. Fix: check "
            "that `issuer-url` points at a fork OIDC issuer that has the relay",
            ExitCode.UNAVAILABLE,
        )
    return line


def _token_of(response: httpx.Response) -> str:
    try:
        token = response.json()["token"]
    except (ValueError, KeyError, TypeError):
        token = None
    if not isinstance(token, str) or not token or any(c.isspace() for c in token):
        raise ClientError(
            "the issuer answered 200 without a usable token. Fix: check that `issuer-url` "
            "points at a fork OIDC issuer",
            ExitCode.UNAVAILABLE,
        )
    return token


def mask_line(value: str) -> str:
    return f"::add-mask::{value}"


def write_output(path: str, name: str, value: str) -> None:
    """Append to $GITHUB_OUTPUT in its multi-line-safe form, with a delimiter not in value."""
    delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    while delimiter in value:
        delimiter = f"ghadelimiter_{secrets.token_hex(16)}"
    with open(path, "a", encoding="utf-8") as output:
        output.write(f"{name}<<{delimiter}{os.linesep}{value}{os.linesep}{delimiter}{os.linesep}")
