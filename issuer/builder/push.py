"""Pushing a built image to the registry repository a trust relationship names.

Done by the builder itself, never by the build: the credentials (from
``BUILDER_REGISTRY_AUTH_FILE``) live in the builder's trusted process only and no command of
the sandbox sees them. The OCI distribution API, as the registry speaks it: each blob checked
with ``HEAD`` and uploaded (``POST`` then one ``PUT``) if missing, then the manifest's exact
bytes ``PUT`` under the tag, so the registry's digest is the archive's. Credentials go to the
push registry's own origin only: an upload location or a token realm elsewhere is refused,
redirects are not followed, and nothing of them reaches an error message.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urljoin, urlsplit

import httpx

from issuer.builder.oci import Image, open_blob

_REPOSITORY = re.compile(
    r"^(?P<host>[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)$"
)
_TAG = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$")
_CHALLENGE = re.compile(r'(\w+)="([^"]*)"')


class PushError(RuntimeError):
    """The image could not be pushed; the message says why (no credential in it)."""


@dataclass(frozen=True)
class PushTarget:
    """Where an image goes: ``host[:port]/path`` and a tag the service chose."""

    repository: str
    tag: str
    insecure: bool = False
    """Plain HTTP (a registry on loopback, in tests)."""
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)

    @property
    def host(self) -> str:
        return self.repository.split("/", 1)[0]

    @property
    def path(self) -> str:
        return self.repository.split("/", 1)[1]

    def __str__(self) -> str:
        return f"{self.repository}:{self.tag}"


def valid_repository(text: str) -> bool:
    """A registry repository as a relationship's ``push`` names it: ``host[:port]/path``,
    the host holding a dot or a port or being ``localhost`` (so it is never read as Docker
    Hub's ``user/name``)."""
    match = _REPOSITORY.match(text)
    if match is None or len(text) > 255:
        return False
    host = match["host"]
    return "." in host or ":" in host or host.startswith("localhost")


def valid_tag(text: str) -> bool:
    return bool(_TAG.match(text))


def credentials_for(auth_file: Path | None, host: str) -> tuple[str, str] | None:
    """The ``user, password`` that a Docker ``config.json``-style file gives ``host``."""
    if auth_file is None:
        return None
    try:
        auths = json.loads(auth_file.read_text(encoding="utf-8")).get("auths", {})
        entry = auths.get(host) or auths.get(f"https://{host}") or auths.get(f"http://{host}")
        if not isinstance(entry, dict):
            return None
        if isinstance(entry.get("auth"), str):
            user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        else:
            user, password = str(entry.get("username", "")), str(entry.get("password", ""))
    except (OSError, ValueError, AttributeError, UnicodeDecodeError):
        return None
    return (user, password) if user else None


async def _chunks(layout: Path, digest: str) -> AsyncIterator[bytes]:
    with open_blob(layout, digest) as file:
        while chunk := await asyncio.to_thread(file.read, 1024 * 1024):
            yield chunk


class RegistryClient:
    """One push, over ``http`` (an httpx client that follows no redirects)."""

    def __init__(self, http: httpx.AsyncClient, target: PushTarget) -> None:
        self._http = http
        self._target = target
        scheme = "http" if target.insecure else "https"
        self._origin = f"{scheme}://{target.host}"
        self._authorization: str | None = None

    def _url(self, path: str) -> str:
        return f"{self._origin}/v2/{self._target.path}/{path}"

    def _same_origin(self, url: str) -> str:
        absolute = urljoin(self._origin + "/", url)
        parts = urlsplit(absolute)
        if f"{parts.scheme}://{parts.netloc}" != self._origin:
            raise PushError("the registry sent the upload to another host; refused")
        return absolute

    async def _request(
        self,
        method: str,
        url: str,
        *,
        content: Any = None,
        headers: Mapping[str, str] | None = None,
    ) -> httpx.Response:
        for _ in range(2):
            sent = dict(headers or {})
            if self._authorization is not None:
                sent["Authorization"] = self._authorization
            try:
                response = await self._http.request(method, url, content=content, headers=sent)
            except httpx.HTTPError as error:
                problem = type(error).__name__
                raise PushError(f"{self._target.host} could not be reached ({problem})") from None
            if response.status_code != 401 or self._authorization is not None:
                return response
            if content is not None and not isinstance(content, bytes):
                return response  # a streamed body cannot be sent twice
            await self._authenticate(response.headers.get("www-authenticate", ""))
        return response

    async def _authenticate(self, challenge: str) -> None:
        target = self._target
        if target.username is None:
            raise PushError(
                f"the registry {target.host} asks for credentials and none are configured"
            )
        scheme, _, params = challenge.partition(" ")
        basic = base64.b64encode(f"{target.username}:{target.password or ''}".encode()).decode()
        if scheme.lower() == "basic":
            self._authorization = f"Basic {basic}"
            return
        if scheme.lower() != "bearer":
            raise PushError(
                f"the registry {target.host} asks for an unknown kind of authentication"
            )
        fields = dict(_CHALLENGE.findall(params))
        realm = fields.get("realm", "")
        realm_parts = urlsplit(realm)
        if realm_parts.scheme not in ("https", "http") or (
            realm_parts.scheme == "http" and not target.insecure
        ):
            raise PushError("the registry's token service is not an HTTPS URL; refused")
        query = {"scope": f"repository:{target.path}:pull,push"}
        if "service" in fields:
            query["service"] = fields["service"]
        try:
            answer = await self._http.get(
                f"{realm}?{urlencode(query)}", headers={"Authorization": f"Basic {basic}"}
            )
            token = answer.json().get("token") or answer.json().get("access_token")
        except (httpx.HTTPError, ValueError, AttributeError):
            token = None
        if not isinstance(token, str) or not token:
            raise PushError(f"the registry {target.host} refused the configured credentials")
        self._authorization = f"Bearer {token}"

    async def push(self, layout: Path, image: Image) -> str:
        """Upload what is missing, then the manifest; returns ``repository:tag@digest``."""
        for blob in image.blobs:
            head = await self._request("HEAD", self._url(f"blobs/{blob.digest}"))
            if head.status_code == 200:
                continue
            start = await self._request("POST", self._url("blobs/uploads/"))
            if start.status_code != 202 or "location" not in start.headers:
                raise PushError(f"the registry refused an upload ({start.status_code})")
            location = self._same_origin(start.headers["location"])
            separator = "&" if "?" in location else "?"
            done = await self._request(
                "PUT",
                f"{location}{separator}{urlencode({'digest': blob.digest})}",
                content=_chunks(layout, blob.digest),
                headers={
                    "Content-Type": "application/octet-stream",
                    "Content-Length": str(blob.size),
                },
            )
            if done.status_code != 201:
                raise PushError(f"the registry refused blob {blob.digest} ({done.status_code})")
        answer = await self._request(
            "PUT",
            self._url(f"manifests/{self._target.tag}"),
            content=image.manifest,
            headers={"Content-Type": image.media_type},
        )
        if answer.status_code != 201:
            raise PushError(f"the registry refused the manifest ({answer.status_code})")
        stored = answer.headers.get("docker-content-digest")
        if stored is not None and stored != image.digest:
            raise PushError("the registry stored the manifest under another digest")
        return f"{self._target}@{image.digest}"
