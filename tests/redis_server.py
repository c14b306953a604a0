"""A real redis-server on a free loopback port, for the tests."""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def start_redis(
    port: int, directory: str, *options: str, config_file: str | None = None
) -> subprocess.Popen[bytes]:
    """A quiet redis-server on 127.0.0.1:``port``, its files in ``directory``, no snapshots;
    ``options`` add to (or override) that, as redis-server's own ``--name value`` pairs, and
    ``config_file`` (a redis.conf) comes before them all."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed: run the README's test command")
    first = [binary] if config_file is None else [binary, config_file]
    base = [*first, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--dir", directory]
    return subprocess.Popen(
        [*base, *options],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


class RedisServer:
    """``config_file``: a redis.conf to start from (the shipped ACL users, say); ``options``
    as redis-server's ``--name value`` pairs."""

    def __init__(self, config_file: str | None = None, *options: str) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="issuer-redis-")
        self._process = start_redis(
            self.port, self._dir.name, "--appendonly", "no", *options, config_file=config_file
        )
        self._wait_ready()

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self._process.poll() is None:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as conn:
                    conn.sendall(b"PING\r\n")
                    # NOAUTH: it answers, but only to a user who names themselves.
                    if conn.recv(16).startswith((b"+PONG", b"-NOAUTH")):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("redis-server did not start")

    def flush(self) -> None:
        with socket.create_connection(("127.0.0.1", self.port), timeout=2) as conn:
            conn.sendall(b"FLUSHALL\r\n")
            conn.recv(16)

    def stop(self) -> None:
        self._process.terminate()
        self._process.wait(timeout=10)
        self._dir.cleanup()
