"""The builder service and its builders, as ``issuer build`` speaks to them (API.md section 2).

The OIDC token and the build token travel only in request bodies and headers, never in a
URL, and never appear in a message: messages name exception types, statuses and the
services' fixed descriptions only.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import tarfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from issuer.client import messages
from issuer.client.codes import ClientError, ExitCode
from issuer.client.context import PackedContext
from issuer.client.stream import BuildFailed, BuildResult, StreamBroken, StreamPrinter, one_line

USER_AGENT = "fork-oidc-issuer-client/0.1"
GRANT_TYPE = "urn:ietf:params:oauth:grant-type:token-exchange"
ID_TOKEN_TYPE = "urn:ietf:params:oauth:token-type:id_token"
STOP_TIMEOUT = 5.0  # a cancelled job is killed ~10 s after its first signal: stop before


@dataclass(frozen=True)
class BuildOptions:
    """What the build asks of the builder (the Docker Engine API's build parameters)."""

    dockerfile: str
    target: str | None = None
    build_args: dict[str, str] = field(default_factory=dict)

    def params(self) -> dict[str, str]:
        params = {"dockerfile": self.dockerfile}
        if self.target:
            params["target"] = self.target
        if self.build_args:
            params["buildargs"] = json.dumps(self.build_args, separators=(",", ":"))
        return params


@dataclass(frozen=True)
class Grant:
    """A build token and the builder it is bound to."""

    build_token: str = field(repr=False)
    builder_id: str
    endpoint: str
    expires_at: int
    ephemeral: bool = True
    cache: bool = False

    @property
    def expiry(self) -> str:
        return time.strftime("%H:%M:%S UTC", time.gmtime(self.expires_at))


def _error_of(response: httpx.Response) -> tuple[str, str]:
    try:
        body = response.json()
        return one_line(body.get("error", ""), 100), one_line(body.get("error_description", ""))
    except (ValueError, AttributeError):
        return "", ""


class BuilderClient:
    def __init__(
        self,
        builder_url: str,
        *,
        say: Callable[[str], None],
        http: httpx.Client | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.builder_url = builder_url.rstrip("/")
        self._say = say
        self._http = http or httpx.Client(
            timeout=httpx.Timeout(30.0), headers={"User-Agent": USER_AGENT}
        )
        self._sleep = sleep
        self._clock = clock

    def close(self) -> None:
        self._http.close()

    def exchange(self, token: str, project: str, timeout: float) -> Grant:
        """RFC 8693: the OIDC token for a build token and a builder of ``project``.
        Retries only what cannot have used the token (no connection, or 503) for up to
        ``timeout`` seconds."""
        form = {
            "grant_type": GRANT_TYPE,
            "subject_token": token,
            "subject_token_type": ID_TOKEN_TYPE,
            "audience": project,
        }
        deadline = self._clock() + timeout
        backoff = 1.0
        while True:
            try:
                response = self._http.post(f"{self.builder_url}/token", data=form)
            except (httpx.ConnectError, httpx.ConnectTimeout) as error:
                if self._clock() + backoff >= deadline:
                    raise ClientError(
                        messages.builder_unreachable("the builder service", type(error).__name__),
                        ExitCode.BUILDER_UNAVAILABLE,
                    ) from None
                problem, pause = f"could not be reached ({type(error).__name__})", backoff
            except httpx.HTTPError as error:
                # Sent, and perhaps taken: a retry could only find the token used.
                raise ClientError(
                    messages.builder_unreachable(
                        "the builder service",
                        f"{type(error).__name__} during the exchange; the token may be spent, "
                        "so re-run the job for a new one",
                    ),
                    ExitCode.BUILDER_UNAVAILABLE,
                ) from None
            else:
                if response.status_code == 200:
                    return _grant_of(response)
                retry_after = response.headers.get("retry-after", "")
                pause = float(retry_after) if retry_after.isdigit() else backoff
                if response.status_code != 503 or self._clock() + pause >= deadline:
                    error_code, description = _error_of(response)
                    refusal = messages.exchange_refusal(
                        response.status_code,
                        error_code,
                        description,
                        project=project,
                        retry_after=retry_after,
                    )
                    raise ClientError(refusal.message, refusal.exit_code)
                problem = f"answered {response.status_code}"
            self._say(f"the builder service {problem}; retrying in {pause:.0f} s")
            self._sleep(pause)
            backoff = min(backoff * 2, 30)

    def build(
        self, grant: Grant, context: PackedContext, options: BuildOptions, printer: StreamPrinter
    ) -> BuildResult:
        """Send the context, print the build's output as it streams, return its result."""
        headers = {
            "Authorization": f"Bearer {grant.build_token}",
            # gzip inside, as the Docker CLI sends it: the builder looks at the bytes.
            "Content-Type": "application/x-tar",
            "Content-Length": str(context.size),
        }
        try:
            with self._http.stream(
                "POST",
                f"{grant.endpoint}/build",
                params=options.params(),
                content=context.chunks(),
                headers=headers,
                # The output can pause for as long as one step runs: no read timeout.
                timeout=httpx.Timeout(30.0, read=None),
            ) as response:
                if response.status_code != 200:
                    response.read()
                    error_code, description = _error_of(response)
                    refusal = messages.build_refusal(
                        response.status_code,
                        error_code,
                        description,
                        context_size=context.size,
                    )
                    raise ClientError(refusal.message, refusal.exit_code)
                for line in response.iter_lines():
                    printer.feed(line)
        except httpx.HTTPError as error:
            raise ClientError(
                messages.builder_unreachable(
                    f"builder {grant.builder_id}", f"{type(error).__name__} during the build"
                ),
                ExitCode.BUILDER_UNAVAILABLE,
            ) from None
        except StreamBroken as error:
            raise ClientError(
                f"{error}. Fix: re-run the job; if it keeps happening, tell the builder "
                "service's operator",
                ExitCode.BUILDER_UNAVAILABLE,
            ) from None
        try:
            return printer.finish()
        except BuildFailed as failed:
            raise ClientError(
                f"{failed}. Fix: see the build's output above; the step that failed is "
                f"{failed.step or 'none: the build did not start a step'}",
                ExitCode.BUILD_FAILED,
            ) from None
        except StreamBroken as error:
            raise ClientError(
                f"{error}. Fix: re-run the job; if it keeps happening, tell the builder "
                "service's operator",
                ExitCode.BUILDER_UNAVAILABLE,
            ) from None

    def save_image(self, grant: Grant, path: Path, digest: str) -> int:
        """Download the OCI archive to ``path`` (whole or not at all); its size in bytes.
        The archive must be the image built: its ``index.json`` names ``digest``."""
        partial = path.with_name(path.name + ".part")
        size = 0
        try:
            with self._http.stream(
                "GET",
                f"{grant.endpoint}/image",
                headers={"Authorization": f"Bearer {grant.build_token}"},
                timeout=httpx.Timeout(30.0, read=300.0),
            ) as response:
                if response.status_code != 200:
                    response.read()
                    error_code, description = _error_of(response)
                    raise ClientError(
                        f"the builder did not hand out the image ({response.status_code} "
                        f"{error_code}): {description or 'no description'}. Fix: re-run the "
                        "job, or drop `output`",
                        ExitCode.BUILDER_UNAVAILABLE,
                    )
                with open(partial, "wb") as archive:
                    for chunk in response.iter_bytes():
                        archive.write(chunk)
                        size += len(chunk)
        except httpx.HTTPError as error:
            partial.unlink(missing_ok=True)
            raise ClientError(
                messages.builder_unreachable(
                    f"builder {grant.builder_id}", f"{type(error).__name__} during the download"
                ),
                ExitCode.BUILDER_UNAVAILABLE,
            ) from None
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        if digest not in _index_digests(partial):
            partial.unlink(missing_ok=True)
            raise ClientError(
                f"the OCI archive the builder handed out does not name the image built "
                f"({digest}) in its index.json; it was not saved. Fix: re-run the job",
                ExitCode.BUILDER_UNAVAILABLE,
            )
        partial.replace(path)
        return size

    def stop(self, grant: Grant) -> str | None:
        """``DELETE {endpoint}``; None once the builder said it stopped, else why not."""
        try:
            response = self._http.delete(
                grant.endpoint,
                headers={"Authorization": f"Bearer {grant.build_token}"},
                timeout=STOP_TIMEOUT,
            )
        except httpx.HTTPError as error:
            return f"it could not be reached ({type(error).__name__})"
        if response.status_code in (200, 202, 204):
            return None
        error_code, description = _error_of(response)
        return f"it answered {response.status_code} {error_code}: {description}".rstrip(": ")


def _grant_of(response: httpx.Response) -> Grant:
    try:
        body: Any = response.json()
        token, builder = body["access_token"], body["builder"]
        grant = Grant(
            str(token),
            str(builder["id"]),
            str(builder["endpoint"]).rstrip("/"),
            int(builder["expires_at"]),
            builder.get("ephemeral") is True,
            builder.get("cache") is True,
        )
    except (ValueError, KeyError, TypeError):
        grant = None
    if (
        grant is None
        or not grant.build_token
        or any(c.isspace() for c in grant.build_token)
        or not grant.endpoint.startswith(("http://", "https://"))
    ):
        raise ClientError(
            "the builder service answered 200 without a usable build token and builder. Fix: "
            "check that `builder-url` points at a builder service",
            ExitCode.BUILDER_UNAVAILABLE,
        )
    return grant


def _index_digests(path: Path) -> set[str]:
    """The manifest digests an OCI archive's ``index.json`` names (none if unreadable)."""
    try:
        with tarfile.open(path, mode="r:*") as archive:
            for member in archive:
                if member.isfile() and member.name.removeprefix("./") == "index.json":
                    index = archive.extractfile(member)
                    if index is None:
                        return set()
                    manifests = json.loads(index.read(1024 * 1024)).get("manifests", [])
                    return {str(m.get("digest")) for m in manifests if isinstance(m, dict)}
    except (tarfile.TarError, OSError, ValueError, AttributeError):
        pass
    return set()


@contextlib.contextmanager
def commands_stopped(say: Callable[[str], None], actions: bool) -> Iterator[None]:
    """Within an Actions step, the runner takes no workflow command from the build's output
    (a Dockerfile's ``RUN`` prints what it likes): ``::stop-commands::`` with a random
    token, resumed after."""
    if not actions:
        yield
        return
    token = secrets.token_hex(16)
    say(f"::stop-commands::{token}")
    try:
        yield
    finally:
        say(f"::{token}::")
