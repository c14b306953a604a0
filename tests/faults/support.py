"""What the fault tests break things with: a persistent redis-server that can be killed and
restarted in place, a three-master Redis Cluster, and a round-robin TCP proxy in front of
issuer replicas. Everything listens on 127.0.0.1 only."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import httpx
import redis

from tests.e2e.harness import GITHUB_TOKEN, IssuerProcess
from tests.redis_server import free_port, start_redis


def _wait_for_ping(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with redis.Redis(host="127.0.0.1", port=port, socket_timeout=0.5) as client:
                if client.ping():
                    return
        except redis.RedisError:
            time.sleep(0.05)
    raise RuntimeError(f"redis-server on port {port} did not start")


class PersistentRedis:
    """A redis-server writing every write to its append-only file before it answers
    (``--appendfsync always``), so that a kill loses nothing that was acknowledged."""

    def __init__(self) -> None:
        self.port = free_port()
        self._dir = tempfile.TemporaryDirectory(prefix="issuer-faults-redis-")
        self._process: subprocess.Popen[bytes] | None = None
        self.start()

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        """Start (or restart) on the same port with the same directory."""
        self._process = start_redis(
            self.port, self._dir.name, "--appendonly", "yes", "--appendfsync", "always"
        )
        _wait_for_ping(self.port)

    def kill(self) -> None:
        """Gone at once, as in a crash: no shutdown save."""
        assert self._process is not None
        self._process.kill()
        self._process.wait(timeout=10)

    def stop(self) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            self._process.wait(timeout=10)
        self._dir.cleanup()


class RedisCluster:
    """Three masters with ``--cluster-enabled yes``, the slots split between them."""

    def __init__(self, masters: int = 3) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="issuer-faults-cluster-")
        self.ports = [_cluster_port() for _ in range(masters)]
        self._processes = []
        for port in self.ports:
            node_dir = os.path.join(self._dir.name, str(port))
            os.mkdir(node_dir)
            self._processes.append(
                start_redis(
                    port,
                    node_dir,
                    "--cluster-enabled",
                    "yes",
                    "--cluster-config-file",
                    "nodes.conf",
                    "--appendonly",
                    "no",
                )
            )
        try:
            for port in self.ports:
                _wait_for_ping(port)
            self._assign_slots()
        except BaseException:
            self.stop()
            raise

    @property
    def url(self) -> str:
        return f"redis+cluster://127.0.0.1:{self.ports[0]}"

    def _assign_slots(self) -> None:
        """What ``redis-cli --cluster create`` does for masters only: split the 16384 slots,
        introduce the nodes, wait until every node says the cluster is ok."""
        per_node = 16384 // len(self.ports)
        clients = [redis.Redis(host="127.0.0.1", port=port) for port in self.ports]
        try:
            for index, client in enumerate(clients):
                first = index * per_node
                last = 16383 if index == len(clients) - 1 else first + per_node - 1
                client.execute_command("CLUSTER", "ADDSLOTSRANGE", first, last)
            for client in clients[1:]:
                client.execute_command("CLUSTER", "MEET", "127.0.0.1", self.ports[0])
            deadline = time.monotonic() + 20
            while not all(_cluster_ok(client) for client in clients):
                if time.monotonic() > deadline:
                    raise RuntimeError("the Redis Cluster did not become ok")
                time.sleep(0.1)
        finally:
            for client in clients:
                client.close()

    def nodes_holding_keys(self) -> int:
        """How many masters hold at least one key."""
        count = 0
        for port in self.ports:
            with redis.Redis(host="127.0.0.1", port=port) as client:
                count += int(client.dbsize()) > 0
        return count

    def stop(self) -> None:
        for process in self._processes:
            if process.poll() is None:
                process.terminate()
        for process in self._processes:
            process.wait(timeout=10)
        self._dir.cleanup()


def _cluster_port() -> int:
    """A free port whose cluster bus port (the port + 10000) is free too."""
    while True:
        port = free_port()
        if port + 10000 > 65535:
            continue
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port + 10000))
            except OSError:
                continue
        return port


def _cluster_ok(client: redis.Redis) -> bool:
    info = client.execute_command("CLUSTER", "INFO")
    text = info.decode() if isinstance(info, bytes) else str(info)
    return "cluster_state:ok" in text and "cluster_known_nodes:3" in text


def replica_env(redis_url: str, github_url: str, **extra: str) -> dict[str, str]:
    """The environment of ``issuer serve`` replicas sharing one store."""
    return {
        "ISSUER_REDIS_URL": redis_url,
        "ISSUER_KEY_ENCRYPTION_KEY": base64.b64encode(os.urandom(32)).decode(),
        "ISSUER_GITHUB_API_URL": github_url,
        "ISSUER_GITHUB_TOKEN": GITHUB_TOKEN,
        "ISSUER_POLL_INTERVAL": "1",
        **extra,
    }


@contextmanager
def replicas(env: dict[str, str], count: int = 2) -> Iterator[list[IssuerProcess]]:
    processes: list[IssuerProcess] = []
    try:
        for _ in range(count):
            processes.append(IssuerProcess(env))
        yield processes
    finally:
        for process in processes:
            process.stop()


def in_progress(metrics_url: str, route: str) -> float:
    """The replica's ``issuer_http_requests_in_progress`` for a route template, read from its
    metrics listener."""
    text = httpx.get(f"{metrics_url}/metrics", timeout=5).text
    prefix = f'issuer_http_requests_in_progress{{method="POST",route="{route}"}}'
    for line in text.splitlines():
        if line.startswith(prefix):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def wait_until(condition: Callable[[], object], what: str, timeout: float = 30) -> None:
    """Poll ``condition()`` until true; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.1)


def exchange_until_done(url: str, claim_id: str, timeout: float = 45) -> httpx.Response:
    """What the client does: 202 and 503 mean ask again (after ``Retry-After`` for 503).
    ``url`` is an issuer's ``/exchange``; the claim id goes as the bearer."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            response = httpx.post(
                url,
                params={"wait": "5"},
                headers={"Authorization": f"Bearer {claim_id}"},
                timeout=15,
            )
        except httpx.HTTPError:
            response = None
        if response is not None and response.status_code not in (202, 503):
            return response
        if time.monotonic() > deadline:
            raise AssertionError(f"no answer but pending or unavailable: {response}")
        if response is None:
            time.sleep(0.5)
        elif response.status_code == 503:
            time.sleep(min(float(response.headers.get("retry-after", "1")), 2))


@dataclass
class Connection:
    backend: int
    requests_bytes: int = 0


class RoundRobinProxy:
    """A TCP proxy on 127.0.0.1: each accepted connection goes to the next backend in turn;
    a backend that refuses the connection is skipped, as a load balancer's health check
    would. Runs its own event loop in a thread."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port = self._listener.getsockname()[1]
        self.backends: list[int] = []
        self.connections: list[Connection] = []
        self._next = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._server: asyncio.Server | None = None
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError("the proxy did not start")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)

        async def start() -> None:
            self._server = await asyncio.start_server(self._serve, sock=self._listener)
            self._ready.set()

        self._loop.run_until_complete(start())
        self._loop.run_forever()

    def open_to(self, backend: int) -> list[Connection]:
        """Connections that reached ``backend`` and sent it something."""
        with self._lock:
            return [c for c in self.connections if c.backend == backend and c.requests_bytes]

    async def _connect(self) -> tuple[int, asyncio.StreamReader, asyncio.StreamWriter]:
        for _ in range(len(self.backends)):
            with self._lock:
                port = self.backends[self._next % len(self.backends)]
                self._next += 1
            try:
                reader, writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            return port, reader, writer
        raise ConnectionRefusedError("no backend accepts connections")

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            port, backend_r, backend_w = await self._connect()
        except OSError:
            client_w.close()
            return
        connection = Connection(port)
        with self._lock:
            self.connections.append(connection)

        async def pipe(
            reader: asyncio.StreamReader, writer: asyncio.StreamWriter, upstream: bool
        ) -> None:
            try:
                while data := await reader.read(65536):
                    if upstream:
                        connection.requests_bytes += len(data)
                    writer.write(data)
                    await writer.drain()
            except OSError:
                pass
            finally:
                writer.close()

        await asyncio.gather(
            pipe(client_r, backend_w, upstream=True), pipe(backend_r, client_w, upstream=False)
        )

    def stop(self) -> None:
        async def close() -> None:
            if self._server is not None:
                self._server.close()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()
            await asyncio.sleep(0.05)  # let the cancelled pipes close their sockets

        asyncio.run_coroutine_threadsafe(close(), self._loop).result(5)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(5)
        self._loop.close()
        with contextlib.suppress(OSError):
            self._listener.close()


def sigkill(process: IssuerProcess) -> None:
    process.process.send_signal(signal.SIGKILL)
    process.process.wait(timeout=10)
