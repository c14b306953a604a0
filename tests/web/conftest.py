"""The issuer's HTTP API on a real loopback socket, with abuse controls set per test."""

from __future__ import annotations

import os
import signal
import socket
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace

from starlette.applications import Starlette

from issuer.oidc.abuse import AbuseConfig
from issuer.oidc.app import begin_shutdown, create_app
from issuer.oidc.config import IssuerConfig
from issuer.oidc.service import IssuerService
from issuer.store import MemoryStore, Store
from issuer.web.http import DrainingServer, server_config
from issuer.web.serving import BackgroundServer, bound_socket
from tests.e2e.conftest import github, http, pr, sim  # noqa: F401  (the same fixtures)
from tests.e2e.harness import base_config

# Hypothesis (under schemathesis) caches what it learns in .hypothesis/: keep it out of the tree.
os.environ.setdefault(
    "HYPOTHESIS_STORAGE_DIRECTORY", os.path.join(tempfile.gettempdir(), "fork-oidc-hypothesis")
)

NO_LIMITS = AbuseConfig(claims_per_address=0, claims_per_repository=0, claims_per_run=0)


class IssuerServer(BackgroundServer):
    """The issuer app under the uvicorn settings and shutdown hook of ``issuer serve``, in a
    thread of this process."""

    def __init__(self, app: Starlette, sockets: list[socket.socket]) -> None:
        super().__init__(app, sockets)
        config = server_config(app, graceful_timeout=10)
        config.log_level = "warning"
        self.server = DrainingServer(config, on_exit=lambda: begin_shutdown(app))
        self._server = self.server

    def signal_exit(self) -> None:
        """What SIGTERM does to ``issuer serve``."""
        self.server.handle_exit(signal.SIGTERM, None)


@contextmanager
def serve_issuer(
    github_url: str,
    abuse: AbuseConfig = NO_LIMITS,
    store: Store | None = None,
    **overrides: object,
) -> Iterator[tuple[str, IssuerConfig]]:
    """An issuer on a real loopback socket in this process; yields its URL and config."""
    sock = bound_socket()
    url = "http://{}:{}".format(*sock.getsockname()[:2])
    config = replace(base_config(github_url, url), **overrides)  # type: ignore[arg-type]
    the_store = store or MemoryStore()
    app = create_app(lambda: IssuerService.start(config, store=the_store), abuse=abuse)
    with IssuerServer(app, [sock]):
        yield url, config
