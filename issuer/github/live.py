"""The live log of a running job, read through GitHub's web UI: optional, UNOFFICIAL, FRAGILE.

GitHub's REST API serves a job's log only once the job has completed. Its web UI shows the
output of running steps to a signed-in user; this channel reads that with an operator's
session cookie (``ISSUER_GITHUB_WEB_SESSION``), as Depot's fork-PR issuer does:

    GET {web}/{owner}/{repo}/actions/runs/{run}/jobs/{job}/steps
    GET {web}/{owner}/{repo}/actions/runs/{run}/jobs/{job}/steps/{n}/backscroll

Neither is documented; GitHub may change or withdraw them at any time, and the session is a
real user's login (give it a dedicated account with no access to anything private). So the
channel is off unless configured, and when GitHub does not answer as expected it finds
nothing (and logs why, never the cookie) rather than failing the look.

The cookie goes to the configured web origin only: every URL is built here from that origin,
redirects are not followed, and the client keeps no cookie jar. Requests share the REST
client's concurrency cap but not its rate-limit budget (the web UI has none that is
documented).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import httpx

from issuer.github.client import USER_AGENT
from issuer.github.facts import JobFacts
from issuer.github.metrics import GITHUB_WEB_REQUESTS

log = logging.getLogger(__name__)

SESSION_COOKIE = "user_session"
_FULL_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}$")
_STARTED = frozenset({"in_progress", "completed"})
_CACHE_SIZE = 4096
_WARN_EVERY = 300.0


class LiveLogChannel:
    """Challenge codes printed so far by a running job's steps, via the web UI.

    ``find_codes`` reads the codes in one step's live lines (the issuer's challenge matcher:
    this module knows GitHub's web UI, not what a challenge looks like)."""

    name = "live"

    def __init__(
        self,
        web_url: str,
        session: str,
        *,
        limiter: asyncio.Semaphore,
        find_codes: Callable[[list[str]], set[str]],
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        parts = urlsplit(web_url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError("the GitHub web URL must be an absolute http(s) URL")
        self._origin = f"{parts.scheme}://{parts.netloc}"
        self._cookie = f"{SESSION_COOKIE}={session}; __Host-user_session_same_site={session}"
        self._limiter = limiter
        self._find_codes = find_codes
        self._clock = clock
        self._http = httpx.AsyncClient(
            headers={
                "User-Agent": USER_AGENT,
                "Accept": "application/json",
                "X-Requested-With": "XMLHttpRequest",
            },
            timeout=timeout,
            transport=transport,
            follow_redirects=False,
        )
        # Codes of completed steps never change: (job id, step number) -> codes.
        self._done: OrderedDict[tuple[int, int], frozenset[str]] = OrderedDict()
        self._warned: dict[str, float] = {}

    def __repr__(self) -> str:
        return f"LiveLogChannel({self._origin})"

    async def aclose(self) -> None:
        await self._http.aclose()

    async def codes_in_running_job(self, repository: str, run_id: int, job: JobFacts) -> set[str]:
        """Every challenge code the job's started steps printed so far (empty when the web UI
        does not tell)."""
        if not _FULL_NAME.match(repository) or job.status == "queued":
            return set()
        base = f"{self._origin}/{repository}/actions/runs/{int(run_id)}/jobs/{int(job.id)}"
        steps = await self._get(base + "/steps", "steps")
        if not isinstance(steps, list):
            return set()
        found: set[str] = set()
        for step in steps:
            if not isinstance(step, dict):
                continue
            number, status = step.get("number"), step.get("status")
            if not isinstance(number, int) or isinstance(number, bool) or status not in _STARTED:
                continue
            cached = self._done.get((job.id, number))
            if cached is not None:
                found |= cached
                continue
            lines = await self._lines(f"{base}/steps/{number}/backscroll")
            if lines is None:
                continue
            codes = self._find_codes(lines)
            found |= codes
            if status == "completed":
                self._remember((job.id, number), frozenset(codes))
        return found

    def _remember(self, key: tuple[int, int], codes: frozenset[str]) -> None:
        self._done[key] = codes
        while len(self._done) > _CACHE_SIZE:
            self._done.popitem(last=False)

    async def _lines(self, url: str) -> list[str] | None:
        body = await self._get(url, "backscroll")
        if not isinstance(body, dict) or not isinstance(body.get("lines"), list):
            return None
        lines = []
        for entry in body["lines"]:
            if isinstance(entry, dict) and isinstance(entry.get("line"), str):
                lines.append(entry["line"])
        return lines

    async def _get(self, url: str, endpoint: str) -> Any:
        if not url.startswith(self._origin + "/"):  # the cookie goes nowhere else
            raise AssertionError("live-log URL off the web origin")
        try:
            async with self._limiter:
                response = await self._http.get(url, headers={"Cookie": self._cookie})
        except httpx.HTTPError as exc:
            GITHUB_WEB_REQUESTS.labels(endpoint, "error").inc()
            self._warn("error", f"GitHub's web UI could not be reached ({type(exc).__name__})")
            return None
        finally:
            self._http.cookies.clear()  # keep nothing GitHub sets
        GITHUB_WEB_REQUESTS.labels(endpoint, str(response.status_code)).inc()
        status = response.status_code
        if status in (301, 302, 303, 401, 403):
            self._warn(
                "session",
                f"GitHub's web UI refused the session ({status}): the live-log channel sees "
                "nothing until ISSUER_GITHUB_WEB_SESSION is renewed",
            )
            return None
        if status != 200:
            if status != 404:
                self._warn(str(status), f"GitHub's web UI answered {status} at {endpoint}")
            return None
        try:
            return response.json()
        except ValueError:
            self._warn("json", f"GitHub's web UI answered no JSON at {endpoint}: has it changed?")
            return None

    def _warn(self, kind: str, message: str) -> None:
        now = self._clock()
        if now - self._warned.get(kind, -_WARN_EVERY) >= _WARN_EVERY:
            self._warned[kind] = now
            log.warning("%s", message)
