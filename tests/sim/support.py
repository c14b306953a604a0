"""Helpers shared by the simulator's tests."""

from __future__ import annotations

import re
import time

import httpx

# What a well-behaved GitHub client sends.
GITHUB_HEADERS = {
    "User-Agent": "fork-oidc-issuer-tests",
    "Accept": "application/vnd.github+json",
    "X-GitHub-Api-Version": "2022-11-28",
}
LOG_LINE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{7}Z ")
UPSTREAM = "/repos/octo-org/octo-repo"


class FakeClock:
    """A clock tests move by hand; starts at the real time so that App JWTs made now are valid."""

    def __init__(self) -> None:
        self.now = float(int(time.time()))

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def links(response: httpx.Response) -> dict[str, str]:
    """rel -> absolute URL, from the Link header."""
    return {str(rel): str(link["url"]) for rel, link in response.links.items()}


def read_log(api: httpx.Client, job_id: int) -> str:
    """The job's log as a client gets it: the API's 302, then the blob, without credentials."""
    redirect = api.get(f"{UPSTREAM}/actions/jobs/{job_id}/logs")
    assert redirect.status_code == 302, redirect.text
    blob = httpx.get(redirect.headers["location"], headers={"User-Agent": "tests"})
    assert blob.status_code == 200, blob.text
    return blob.content.decode("utf-8")


def log_texts(log: str) -> list[str]:
    """The log's lines without their timestamps (continuation lines have none)."""
    return [LOG_LINE.sub("", line, count=1) for line in log.removeprefix("\ufeff").splitlines()]
