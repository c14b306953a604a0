"""Serve ASGI apps on real loopback sockets in a background thread (demo and tests)."""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType

import uvicorn
from starlette.types import ASGIApp


def bound_socket(host: str = "127.0.0.1", port: int = 0) -> socket.socket:
    """A listening TCP socket; port 0 picks a free one."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


class BackgroundServer:
    """One uvicorn server, on one or more sockets, running in its own thread and event loop.

    ``http`` is uvicorn's HTTP implementation: h11 by default, as the services run in
    production; "auto" takes httptools when it is installed."""

    def __init__(
        self, app: ASGIApp, sockets: list[socket.socket] | None = None, *, http: str = "h11"
    ) -> None:
        self.sockets = sockets or [bound_socket()]
        config = uvicorn.Config(
            app, log_level="warning", lifespan="on", access_log=False, http=http
        )
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._run, daemon=True)

    @property
    def url(self) -> str:
        """Base URL of the first socket."""
        return self.url_of(0)

    def url_of(self, index: int) -> str:
        host, port = self.sockets[index].getsockname()[:2]
        return f"http://{host}:{port}"

    def _run(self) -> None:
        self._server.run(sockets=self.sockets)

    def start(self, timeout: float = 10.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)
        for sock in self.sockets:
            sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
