"""An async GitHub REST client that is frugal with the request budget.

- Credentials: personal tokens, GitHub App installations (tokens minted on demand, kept in
  memory), or none. Each request goes out on the credential with most budget left
  (``x-ratelimit-remaining``), keeping a reserve; the budget is shared by all replicas
  through the store (:mod:`issuer.github.budget`).
- Conditional requests: ETags and bodies are kept in the shared store, so a repeated read,
  from any replica, is a 304 that GitHub does not count.
- Rate limits: a primary limit rests the credential until ``x-ratelimit-reset`` and the
  request moves to another credential; with every credential resting the client raises
  :class:`GitHubRateLimited`. A secondary limit rests the credential for ``retry-after``
  (or a minute, doubling with jitter while they repeat) and raises at once. 5xx and network
  errors are retried twice with jittered exponential backoff; other 4xx never are.
- Secondary limit: every API request, and every installation token's mint, first draws its
  points from its credential's budget shared through the store (:mod:`issuer.github.pacing`),
  waiting as its priority says when points are short; the credential is the one with most
  points left among those the primary budget allows.
- At most ``concurrency`` requests to GitHub at once in this process (API, log downloads,
  and the web-UI live-log channel, which borrows :attr:`GitHubClient.limiter`).
- Pagination follows the ``Link`` header; page URLs are never built here.
- Job logs: the API answers 302 to another host, which is fetched without credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import math
import random
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any
from urllib.parse import urlsplit

import httpx

from issuer.github.app_auth import GitHubApp
from issuer.github.budget import Budget, BudgetBoard, Rest, Standing, choose, rank
from issuer.github.credentials import (
    AnonymousCredential,
    Credential,
    InstallationCredential,
    MintedToken,
    TokenCredential,
)
from issuer.github.errors import (
    GitHubError,
    GitHubNotFound,
    GitHubRateLimited,
    GitHubUnavailable,
)
from issuer.github.meter import GET_POINTS, WRITE_POINTS, spend
from issuer.github.metrics import GITHUB_CONDITIONAL, GITHUB_REQUESTS, GITHUB_RESTS
from issuer.github.pacing import DEFAULT_POINTS_PER_MINUTE, GET_COST, WRITE_COST, Pacer
from issuer.github.shards import ClientShards
from issuer.store import Store

log = logging.getLogger(__name__)

USER_AGENT = "fork-oidc-issuer/0.1"
API_VERSION = "2022-11-28"
ETAG_TTL = 3600.0
MAX_LOG_BYTES = 32 * 1024 * 1024  # a job log past this is not read further (nor counted)
LOG_CHUNK = 256 * 1024  # a log is handed on in pieces of at most this
MAX_PAGES = 50
RETRIES = 2  # of a 5xx or a network error
DEFAULT_RESERVE = 100
DEFAULT_CONCURRENCY = 16
REFUSED_REST = 60.0  # a credential GitHub refuses (401) is not tried again for this long
SECONDARY_DEFAULT = 60.0  # GitHub: "wait at least one minute" when retry-after is absent
SECONDARY_MAX = 900.0
# A brand-new installation token may be refused for a few seconds: wait this long at most
# inside one call rather than failing it.
SHORT_WAIT = 3.0

Sleep = Callable[[float], Awaitable[None]]


@dataclass(frozen=True)
class Page:
    body: Any
    next_url: str | None


def _endpoint(path: str) -> str:
    """A low-cardinality name for metrics: the path with ids replaced."""
    parts = ["{}" if part.isdigit() else part for part in path.split("/")]
    if len(parts) > 3 and parts[1] == "repos":
        parts[2:4] = ["{owner}", "{repo}"]
    return "/".join(parts)


def next_link(link_header: str | None) -> str | None:
    if not link_header:
        return None
    for part in link_header.split(","):
        url, _, params = part.partition(";")
        if 'rel="next"' in params.replace(" ", ""):
            return url.strip().strip("<>")
    return None


def _cached_record(raw: bytes | None) -> dict[str, Any] | None:
    """A stored ``{"etag", "body", "next"}``, or None (absent, or not such a record)."""
    if raw is None:
        return None
    try:
        record = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(record, dict) or not isinstance(record.get("etag"), str):
        return None
    return record


def _message(response: httpx.Response) -> str:
    try:
        body = response.json()
    except ValueError:
        return ""
    return str(body.get("message", "")) if isinstance(body, dict) else ""


class GitHubClient:
    def __init__(
        self,
        api_url: str,
        tokens: Sequence[str],
        store: Store,
        *,
        credentials: Sequence[Credential] = (),
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
        reserve: int = DEFAULT_RESERVE,
        concurrency: int = DEFAULT_CONCURRENCY,
        points_per_minute: int | None = DEFAULT_POINTS_PER_MINUTE,
        clock: Callable[[], float] = time.time,
        sleep: Sleep = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        """``tokens`` and ``credentials`` (e.g. App installations) together; with neither,
        requests go out unauthenticated. ``points_per_minute`` is each credential's pace
        under GitHub's secondary limit (None: unpaced). ``clock`` is epoch seconds (GitHub's
        resets are); the pace is kept by the store's clock."""
        if reserve < 0 or concurrency < 1:
            raise ValueError("reserve must be >= 0 and concurrency >= 1")
        self.api_url = api_url.rstrip("/")
        self._api_parts = urlsplit(self.api_url)
        self._api_origin = self._api_parts._replace(path="", query="", fragment="")
        self._store = store
        chosen: list[Credential] = [TokenCredential(t) for t in tokens]
        chosen.extend(credentials)
        names = [c.name for c in chosen]
        if len(set(names)) != len(names):
            raise ValueError("the same GitHub credential is configured twice")
        self._credentials: list[Credential] = chosen or [AnonymousCredential()]
        self._budget = BudgetBoard(store, reserve)
        self._reserve = reserve
        self._clock = clock
        self._sleep = sleep
        self._pacer = Pacer(store, points_per_minute, sleep)
        self._random = rng or random.Random()  # noqa: S311 - jitter, not secrecy
        self._not_before: dict[str, float] = {}  # this process only: young installation tokens
        self.limiter = asyncio.Semaphore(concurrency)
        self.concurrency = concurrency
        self.counted_requests = 0
        headers = {
            "Accept": "application/vnd.github+json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Api-Version": API_VERSION,
        }
        self._api = ClientShards(
            concurrency,
            lambda limits: httpx.AsyncClient(
                headers=headers,
                timeout=timeout,
                transport=transport,
                follow_redirects=False,
                limits=limits,
            ),
        )
        # A separate client for log blobs: it has never seen a credential.
        self._blobs = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT}, timeout=timeout, transport=transport
        )

    @property
    def points_per_minute(self) -> int | None:
        """Each credential's pace under GitHub's secondary limit (None: unpaced)."""
        return self._pacer.points_per_minute

    @property
    def credential_names(self) -> list[str]:
        return [c.name for c in self._credentials]

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._blobs.aclose()

    # -- credentials and resting ------------------------------------------------------------

    async def has_usable_credential(self) -> bool:
        """Whether a request could go out now: some credential is not resting and has budget
        above its reserve (as every replica sees it, through the store)."""
        names = [c.name for c in self._credentials]
        defaults = [c.default_limit for c in self._credentials]
        standings = await self._budget.standings(names)
        now = self._clock()
        seen = [self._with_local_rest(s, now) for s in standings]
        return choose(seen, defaults, self._reserve, now).index is not None

    async def _pick(
        self, also: list[str], cost: int = GET_COST
    ) -> tuple[Credential, Standing, list[bytes | None]]:
        """The credential to send on, its points drawn, and the values of the keys ``also``
        read with the standings (once: a wait for points does not read them again).

        Among the credentials the primary budget allows (not resting, above the reserve), the
        one with most points left pays (:mod:`issuer.github.pacing`); when none has the points
        for the request's priority, sleep a little and look again. When every credential rests
        but one is free within a few seconds (a brand-new installation token), wait for it
        rather than fail."""
        credentials = self._credentials
        names = [c.name for c in credentials]
        defaults = [c.default_limit for c in credentials]
        values: list[bytes | None] | None = None
        resting = 0
        while True:
            now = self._clock()
            standings, read = await self._budget.read(names, also if values is None else ())
            values = read if values is None else values
            seen = [self._with_local_rest(s, now) for s in standings]
            ranking = rank(seen, defaults, self._reserve, now)
            if ranking.indices:
                drawn = await self._pacer.draw([names[i] for i in ranking.indices], cost)
                if drawn.index is not None:
                    index = ranking.indices[drawn.index]
                    return credentials[index], standings[index], values
                await self._pacer.nap(drawn)
                continue
            if ranking.wait > SHORT_WAIT:
                raise GitHubRateLimited(
                    "every GitHub credential is resting", retry_after=math.ceil(ranking.wait)
                )
            await self._sleep(ranking.wait)
            resting += 1
            if resting == 3:
                raise GitHubUnavailable("no GitHub credential became usable", retry_after=5)

    def _with_local_rest(self, standing: Standing, now: float) -> Standing:
        """Add this process's own rests (young installation tokens) to the shared ones."""
        local = self._not_before.get(standing.name, 0.0)
        if local <= max(now, standing.rest.until):
            return standing
        return Standing(standing.name, standing.budget, Rest(local, standing.rest.strikes))

    async def _rest(
        self, standing: Standing, seconds: float, reason: str, strikes: int = 0, detail: str = ""
    ) -> None:
        """Set the credential aside for every replica. ``reason`` is a metric label (a fixed
        text); ``detail`` goes to the log only."""
        seconds = max(1.0, seconds)
        log.warning("GitHub %s%s: credential %s rests %d s", reason, detail, standing.name, seconds)
        GITHUB_RESTS.labels(standing.name, reason).inc()
        now = self._clock()
        await self._budget.rest(standing.name, now + seconds, now, strikes=strikes)

    # -- installation tokens ----------------------------------------------------------------

    async def _mint(self, app: GitHubApp, installation_id: int) -> MintedToken:
        """POST /app/installations/{id}/access_tokens with the App's JWT."""
        url = f"{self.api_url}/app/installations/{installation_id}/access_tokens"
        endpoint = "/app/installations/{}/access_tokens"
        await self._pacer.take(app.name, WRITE_COST)  # the App's own budget: its JWT's
        headers = {"Authorization": f"Bearer {app.jwt()}"}
        try:
            async with self.limiter, self._api.client() as api:
                response = await api.post(url, headers=headers)
        except httpx.HTTPError as exc:
            GITHUB_REQUESTS.labels(endpoint, "error", app.name).inc()
            raise GitHubUnavailable(
                f"GitHub could not be reached to mint a token ({type(exc).__name__})",
                retry_after=5,
            ) from None
        self.counted_requests += 1
        spend(WRITE_POINTS)
        GITHUB_REQUESTS.labels(endpoint, str(response.status_code), app.name).inc()
        if response.status_code == 201:
            try:
                body = response.json()
                token = body["token"]
                expires = datetime.fromisoformat(str(body["expires_at"]).replace("Z", "+00:00"))
            except (ValueError, KeyError, TypeError):
                raise GitHubError("GitHub's installation token answer is malformed") from None
            if not isinstance(token, str) or not token:
                raise GitHubError("GitHub's installation token answer is malformed")
            log.info(
                "minted an installation token for app-%d-inst-%d, valid until %s",
                app.app_id,
                installation_id,
                expires.isoformat(),
            )
            return MintedToken(token, expires.timestamp())
        message = _message(response)[:200]
        if response.status_code >= 500:
            raise GitHubUnavailable(
                f"GitHub answered {response.status_code} minting a token", retry_after=5
            )
        raise _MintRefused(response.status_code, message, response)

    # -- requests -------------------------------------------------------------------------

    def _url(self, path_or_url: str) -> str:
        if path_or_url.startswith(("http://", "https://")):
            parts = urlsplit(path_or_url)
            if parts._replace(path="", query="", fragment="") != self._api_origin:
                raise GitHubError("refusing to send credentials to a URL off the API host")
            return path_or_url
        return self.api_url + path_or_url

    async def get_json(self, path_or_url: str) -> Page:
        """A GET of the REST API, conditional when we have seen it before."""
        url = self._url(path_or_url)
        cache_key = "gh:etag:" + hashlib.sha256(url.encode()).hexdigest()
        response, cached = await self._send(url, cache_key=cache_key)
        etag = cached["etag"] if cached else None
        if etag is not None:
            GITHUB_CONDITIONAL.labels("hit" if response.status_code == 304 else "miss").inc()
        if response.status_code == 304 and cached is not None:
            return Page(cached["body"], cached.get("next"))
        try:
            body = response.json()
        except ValueError:
            raise GitHubError(f"GitHub's answer at {self._endpoint(url)} is not JSON") from None
        next_url = next_link(response.headers.get("link"))
        new_etag = response.headers.get("etag")
        if new_etag:
            record = {"etag": new_etag, "body": body, "next": next_url}
            await self._store.set(cache_key, json.dumps(record).encode(), ttl=ETAG_TTL)
        return Page(body, next_url)

    async def get_all(self, path: str, items_key: str | None) -> list[Any]:
        """Every item of a paginated list, following ``rel="next"``."""
        items: list[Any] = []
        url: str | None = path
        for _ in range(MAX_PAGES):
            if url is None:
                return items
            page = await self.get_json(url)
            found = (
                page.body.get(items_key)
                if items_key and isinstance(page.body, dict)
                else (None if items_key else page.body)
            )
            if not isinstance(found, list):
                raise GitHubError(f"GitHub's list at {_endpoint(path)} is malformed")
            items.extend(found)
            url = page.next_url
        raise GitHubError(f"more than {MAX_PAGES} pages at {_endpoint(path)}")

    def _endpoint(self, url: str) -> str:
        return _endpoint(urlsplit(url).path.removeprefix(self._api_parts.path))

    async def _send(
        self, url: str, *, cache_key: str | None = None, redirects: bool = False
    ) -> tuple[httpx.Response, dict[str, Any] | None]:
        """The answer, and the record under ``cache_key`` (ETag, body, next page) if there
        was one: the request was conditional on its ETag."""
        endpoint = self._endpoint(url)
        failures = 0
        cached: dict[str, Any] | None = None
        also = [cache_key] if cache_key else []
        for _ in range(2 * len(self._credentials) + RETRIES + 8):
            credential, standing, values = await self._pick(also)
            if also:
                cached = _cached_record(values[0])
                also = []  # read once: a retry keeps the record
            etag = cached["etag"] if cached else None
            try:
                authorization = await credential.authorization(self._mint)
            except _MintRefused as refused:
                await self._mint_refused(standing, refused)
                continue
            headers = {}
            if authorization is not None:
                headers["Authorization"] = authorization
            if etag:
                headers["If-None-Match"] = etag
            try:
                async with self.limiter, self._api.client() as api:
                    response = await api.get(url, headers=headers)
            except httpx.HTTPError as exc:
                GITHUB_REQUESTS.labels(endpoint, "error", credential.name).inc()
                failures += 1
                if failures > RETRIES:
                    raise GitHubUnavailable(
                        f"GitHub could not be reached ({type(exc).__name__})", retry_after=5
                    ) from None
                await self._backoff(failures)
                continue
            status = response.status_code
            spend(GET_POINTS)
            if status != 304:
                self.counted_requests += 1
            GITHUB_REQUESTS.labels(endpoint, str(status), credential.name).inc()
            now = self._clock()
            await self._budget.note(standing, Budget.from_headers(response.headers), now)
            if status == 401:
                await self._refused(credential, standing)
                continue
            credential.accepted()
            if status in (200, 304) or (redirects and status in (301, 302, 307)):
                await self._budget.forgive(standing, now)
                return response, cached
            if status == 404:
                raise GitHubNotFound(f"{endpoint}: not found")
            if status in (403, 429):
                if await self._rate_limited(standing, response):
                    continue  # a primary limit: another credential may have budget left
                raise GitHubError(f"GitHub refused {endpoint} with {status}")
            if status >= 500:
                failures += 1
                if failures > RETRIES:
                    raise GitHubUnavailable(f"GitHub answered {status}", retry_after=5)
                await self._backoff(failures)
                continue
            raise GitHubError(f"GitHub answered {status} at {endpoint}")
        raise GitHubUnavailable("GitHub refused every credential", retry_after=60)

    async def _backoff(self, failures: int) -> None:
        """0.25 s, 0.5 s, ... (at most 2 s), each times a random 0.5..1.5."""
        base = min(2.0, 0.25 * 2 ** (failures - 1))
        await self._sleep(base * (0.5 + self._random.random()))

    async def _refused(self, credential: Credential, standing: Standing) -> None:
        """A 401: retry a young installation token shortly, refresh an old one once, and
        set aside anything else for a while."""
        verdict = credential.refused()
        if verdict is None:
            await self._rest(standing, REFUSED_REST, "refused the credential (401)")
        elif verdict > 0:
            self._not_before[credential.name] = self._clock() + verdict
            log.info("GitHub does not accept %s's new token yet", credential.name)
        else:
            log.info("GitHub refused %s's token: minting a new one", credential.name)

    async def _mint_refused(self, standing: Standing, refused: _MintRefused) -> None:
        """GitHub would not mint an installation token: rest that installation."""
        if refused.status in (403, 429):
            if await self._rate_limited(standing, refused.response):
                return
        wait = 600.0 if refused.status == 404 else REFUSED_REST
        detail = f" ({refused.status}: {refused.message})"
        await self._rest(standing, wait, "refused to mint a token", detail=detail)

    async def _rate_limited(self, standing: Standing, response: httpx.Response) -> bool:
        """Rest the credential of a rate-limit answer. True for a primary limit (try another
        credential); raises GitHubRateLimited for a secondary one; False for any other 403."""
        headers = response.headers
        message = _message(response).lower()
        retry_after = headers.get("retry-after", "").strip()
        now = self._clock()
        if headers.get("x-ratelimit-remaining") == "0" and "secondary" not in message:
            reset = headers.get("x-ratelimit-reset", "")
            wait = float(reset) - now if reset.isdigit() else SECONDARY_DEFAULT
            await self._rest(standing, math.ceil(wait) + 1, "primary rate limit")
            return True
        if "rate limit" in message or response.status_code == 429 or retry_after:
            strikes = standing.rest.strikes + 1
            if retry_after.isdigit():
                wait = float(retry_after)
            else:
                wait = SECONDARY_DEFAULT * 2 ** (strikes - 1)
                if strikes > 1:
                    wait *= 1 + 0.25 * self._random.random()
                wait = min(wait, SECONDARY_MAX)
            wait = max(1.0, math.ceil(wait))
            await self._rest(standing, wait, "secondary rate limit", strikes=strikes)
            raise GitHubRateLimited("GitHub's secondary rate limit was hit", retry_after=int(wait))
        return False

    # -- job logs -------------------------------------------------------------------------

    async def stream_log(
        self,
        repository: str,
        job_id: int,
        sink: Callable[[bytes], Awaitable[None]],
        max_bytes: int = MAX_LOG_BYTES,
    ) -> LogDownload:
        """Hand the job's log to ``sink`` chunk by chunk, as it arrives, never holding it
        whole. Stops at ``max_bytes``: TOO_LARGE (the chunks handed so far are not the log)."""
        url = f"{self.api_url}/repos/{repository}/actions/jobs/{job_id}/logs"
        try:
            response, _ = await self._send(url, redirects=True)
        except GitHubNotFound:
            return LogDownload.MISSING  # running, or completed moments ago and being finalised
        if response.status_code == 200:  # served in place: already read by the API client
            content = response.content
            if len(content) > max_bytes:
                return self._too_large(job_id, max_bytes)
            for start in range(0, len(content), LOG_CHUNK):
                await sink(content[start : start + LOG_CHUNK])
            return LogDownload.COMPLETE
        location = response.headers.get("location")
        if not location:
            raise GitHubError("log redirect without a Location")
        blob_url = response.url.join(location)
        size = 0
        try:
            async with self.limiter, self._blobs.stream("GET", blob_url) as blob:
                if blob.status_code != 200:
                    return LogDownload.MISSING  # BlobNotFound while it runs, or an expired URL
                declared = blob.headers.get("content-length", "")
                if declared.isdigit() and int(declared) > max_bytes:
                    return self._too_large(job_id, max_bytes)
                async for chunk in blob.aiter_bytes(LOG_CHUNK):
                    size += len(chunk)
                    if size > max_bytes:
                        return self._too_large(job_id, max_bytes)
                    await sink(chunk)
        except httpx.HTTPError as exc:
            raise GitHubUnavailable(
                f"the job log could not be downloaded ({type(exc).__name__})", retry_after=5
            ) from None
        return LogDownload.COMPLETE

    @staticmethod
    def _too_large(job_id: int, max_bytes: int) -> LogDownload:
        log.warning("job %d: its log is over %d bytes; not scanned", job_id, max_bytes)
        return LogDownload.TOO_LARGE

    async def download_log(self, repository: str, job_id: int) -> str | None:
        """The job's whole log (up to the cap), or None while GitHub does not serve it yet
        or it is over the cap."""
        chunks: list[bytes] = []

        async def keep(chunk: bytes) -> None:
            chunks.append(chunk)

        outcome = await self.stream_log(repository, job_id, keep)
        if outcome is not LogDownload.COMPLETE:
            return None
        return b"".join(chunks).decode("utf-8", errors="replace")


class LogDownload(Enum):
    COMPLETE = "complete"
    MISSING = "missing"  # not served (yet)
    TOO_LARGE = "too_large"


class _MintRefused(Exception):
    """GitHub answered a 4xx to a request for an installation token."""

    def __init__(self, status: int, message: str, response: httpx.Response) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.response = response


__all__ = [
    "GitHubClient",
    "InstallationCredential",
    "LogDownload",
    "Page",
    "TokenCredential",
    "next_link",
]
