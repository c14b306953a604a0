"""An async GitHub REST client that is frugal with the request budget.

- Conditional requests: ETags and bodies are kept in the shared store, so a repeated read,
  from any replica, is a 304 that GitHub does not count.
- Rate limits: a primary limit rests the credential until ``x-ratelimit-reset``; a
  secondary one until ``retry-after`` (60 s when blank). The rest is shared via the store.
- Pagination follows the ``Link`` header; page URLs are never built here.
- Job logs: the API answers 302 to another host, which is fetched without credentials.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from issuer.github.errors import GitHubError, GitHubNotFound, GitHubRateLimited, GitHubUnavailable
from issuer.metrics import GITHUB_REQUESTS
from issuer.store import Store

log = logging.getLogger(__name__)

USER_AGENT = "fork-oidc-issuer/0.1"
API_VERSION = "2022-11-28"
ETAG_TTL = 3600.0
MAX_LOG_BYTES = 32 * 1024 * 1024
MAX_PAGES = 50
RETRIES = 2


@dataclass
class Credential:
    """A GitHub token. ``name`` identifies it in logs and metrics; the token never appears."""

    token: str | None
    remaining: int = 5000

    @property
    def name(self) -> str:
        if self.token is None:
            return "anonymous"
        return "token-" + hashlib.sha256(self.token.encode()).hexdigest()[:8]

    def __repr__(self) -> str:
        return f"Credential({self.name})"


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


class GitHubClient:
    def __init__(
        self,
        api_url: str,
        tokens: tuple[str, ...],
        store: Store,
        *,
        transport: httpx.AsyncBaseTransport | None = None,
        timeout: float = 10.0,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self._api_origin = urlsplit(self.api_url)._replace(path="", query="", fragment="")
        self._store = store
        self._credentials = [Credential(t) for t in tokens] or [Credential(None, remaining=60)]
        headers = {
            "Accept": "application/vnd.github+json",
            "User-Agent": USER_AGENT,
            "X-GitHub-Api-Version": API_VERSION,
        }
        self._api = httpx.AsyncClient(
            headers=headers, timeout=timeout, transport=transport, follow_redirects=False
        )
        # A separate client for log blobs: it has never seen a credential.
        self._blobs = httpx.AsyncClient(
            headers={"User-Agent": USER_AGENT}, timeout=timeout, transport=transport
        )

    async def aclose(self) -> None:
        await self._api.aclose()
        await self._blobs.aclose()

    # -- credentials and resting ------------------------------------------------------------

    async def _pick_credential(self) -> Credential:
        """The credential with most budget left that is not resting."""
        soonest = None
        for credential in sorted(self._credentials, key=lambda c: -c.remaining):
            resting = await self._store.get(f"gh:rest:{credential.name}")
            if resting is None:
                return credential
            until = float(resting)
            soonest = until if soonest is None else min(soonest, until)
        wait = int((soonest or time.time() + 60) - time.time()) + 1
        raise GitHubRateLimited("every GitHub credential is resting", retry_after=wait)

    async def _rest(self, credential: Credential, seconds: int, why: str) -> None:
        seconds = max(1, seconds)
        log.warning("GitHub %s: credential %s rests %d s", why, credential.name, seconds)
        await self._store.set(
            f"gh:rest:{credential.name}", str(time.time() + seconds).encode(), ttl=seconds
        )

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
        cached_raw = await self._store.get(cache_key)
        cached = json.loads(cached_raw) if cached_raw else None
        response = await self._send(url, etag=cached["etag"] if cached else None)
        if response.status_code == 304 and cached is not None:
            return Page(cached["body"], cached.get("next"))
        try:
            body = response.json()
        except ValueError:
            raise GitHubError(f"GitHub's answer at {_endpoint(url)} is not JSON") from None
        next_url = next_link(response.headers.get("link"))
        etag = response.headers.get("etag")
        if etag:
            record = {"etag": etag, "body": body, "next": next_url}
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

    async def _send(
        self, url: str, *, etag: str | None = None, redirects: bool = False
    ) -> httpx.Response:
        endpoint = _endpoint(urlsplit(url).path.removeprefix(urlsplit(self.api_url).path))
        for attempt in range(RETRIES + 1):
            credential = await self._pick_credential()
            headers = {}
            if credential.token is not None:
                headers["Authorization"] = f"Bearer {credential.token}"
            if etag:
                headers["If-None-Match"] = etag
            try:
                response = await self._api.get(url, headers=headers)
            except httpx.HTTPError as exc:
                GITHUB_REQUESTS.labels(endpoint, "error", credential.name).inc()
                if attempt == RETRIES:
                    raise GitHubUnavailable(
                        f"GitHub could not be reached ({type(exc).__name__})", retry_after=5
                    ) from None
                await self._backoff(attempt)
                continue
            GITHUB_REQUESTS.labels(endpoint, str(response.status_code), credential.name).inc()
            self._note_budget(credential, response)
            status = response.status_code
            if status in (200, 304) or (redirects and status in (301, 302, 307)):
                return response
            if status == 404:
                raise GitHubNotFound(f"{endpoint}: not found")
            if status in (403, 429):
                await self._rate_limited(credential, response)
                raise GitHubError(f"GitHub refused {endpoint} with {status}")
            if status == 401:
                await self._rest(credential, 60, "refused the credential (401)")
                continue
            if status >= 500 and attempt < RETRIES:
                await self._backoff(attempt)
                continue
            if status >= 500:
                raise GitHubUnavailable(f"GitHub answered {status}", retry_after=5)
            raise GitHubError(f"GitHub answered {status} at {endpoint}")
        raise GitHubUnavailable("GitHub refused every credential", retry_after=60)

    @staticmethod
    async def _backoff(attempt: int) -> None:
        await asyncio.sleep(min(2.0, 0.25 * 2**attempt) * (0.5 + random.random()))  # noqa: S311

    def _note_budget(self, credential: Credential, response: httpx.Response) -> None:
        remaining = response.headers.get("x-ratelimit-remaining", "")
        if remaining.isdigit():
            credential.remaining = int(remaining)

    async def _rate_limited(self, credential: Credential, response: httpx.Response) -> None:
        """Raise GitHubRateLimited for a rate-limit answer, after resting the credential."""
        headers = response.headers
        try:
            message = str(response.json().get("message", ""))
        except ValueError:
            message = ""
        retry_after = headers.get("retry-after", "").strip()
        if headers.get("x-ratelimit-remaining") == "0" and "secondary" not in message.lower():
            reset = headers.get("x-ratelimit-reset", "")
            wait = int(reset) - int(time.time()) + 1 if reset.isdigit() else 60
            await self._rest(credential, wait, "primary rate limit")
            raise GitHubRateLimited("GitHub's rate limit is exhausted", retry_after=wait)
        if "rate limit" in message.lower() or response.status_code == 429 or retry_after:
            wait = int(retry_after) if retry_after.isdigit() else 60
            await self._rest(credential, wait, "secondary rate limit")
            raise GitHubRateLimited("GitHub's secondary rate limit was hit", retry_after=wait)

    # -- job logs -------------------------------------------------------------------------

    async def download_log(self, repository: str, job_id: int) -> str | None:
        """The job's whole log, or None while GitHub does not serve it yet."""
        url = f"{self.api_url}/repos/{repository}/actions/jobs/{job_id}/logs"
        try:
            response = await self._send(url, redirects=True)
        except GitHubNotFound:
            return None  # running, or completed moments ago and still being finalised
        if response.status_code == 200:
            return response.text
        location = response.headers.get("location")
        if not location:
            raise GitHubError("log redirect without a Location")
        blob_url = response.url.join(location)
        try:
            async with self._blobs.stream("GET", blob_url) as blob:
                if blob.status_code != 200:
                    return None  # BlobNotFound while the job runs, or an expired URL
                chunks: list[bytes] = []
                size = 0
                async for chunk in blob.aiter_bytes():
                    chunks.append(chunk)
                    size += len(chunk)
                    if size >= MAX_LOG_BYTES:
                        log.warning("job %d log truncated at %d bytes", job_id, MAX_LOG_BYTES)
                        break
        except httpx.HTTPError as exc:
            raise GitHubUnavailable(
                f"the job log could not be downloaded ({type(exc).__name__})", retry_after=5
            ) from None
        return b"".join(chunks).decode("utf-8", errors="replace")
