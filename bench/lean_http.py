"""A lean HTTP/1.1 client for load generation: keep-alive connections over asyncio streams,
JSON bodies, Content-Length or chunked answers. It exists because on a two-core machine a
full-featured client spends more CPU generating the load than the services spend answering
it, and then measures its own queueing."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit


@dataclass
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.body.decode(errors="replace")


class LeanClient:
    """Requests to loopback hosts; idle connections are kept per host and reused."""

    def __init__(self, timeout: float = 60.0) -> None:
        self._idle: dict[tuple[str, int], list[tuple[asyncio.StreamReader, asyncio.StreamWriter]]]
        self._idle = {}
        self._timeout = timeout

    async def post(
        self, url: str, body: Any = None, headers: dict[str, str] | None = None
    ) -> Answer:
        return await self.request("POST", url, body, headers)

    async def get(self, url: str) -> Answer:
        return await self.request("GET", url, None)

    async def request(
        self, method: str, url: str, body: Any, headers: dict[str, str] | None = None
    ) -> Answer:
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 80
        target = parts.path + (f"?{parts.query}" if parts.query else "")
        payload = b"" if body is None else json.dumps(body).encode()
        head = (
            f"{method} {target} HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"User-Agent: bench\r\nContent-Length: {len(payload)}\r\n"
            + ("Content-Type: application/json\r\n" if body is not None else "")
            + "".join(f"{name}: {value}\r\n" for name, value in (headers or {}).items())
            + "\r\n"
        ).encode()
        for attempt in range(2):  # a kept connection the server closed meanwhile: once more
            reader, writer, reused = await self._connection(host, port)
            try:
                writer.write(head + payload)
                answer = await asyncio.wait_for(_read_answer(reader), self._timeout)
            except (ConnectionError, asyncio.IncompleteReadError) as exc:
                writer.close()
                if reused and attempt == 0:
                    continue
                raise ConnectionError(f"{method} {url}: {exc!r}") from None
            if answer.headers.get("connection", "").lower() == "close":
                writer.close()
            else:
                self._idle.setdefault((host, port), []).append((reader, writer))
            return answer
        raise ConnectionError(f"{method} {url}: no answer")

    async def _connection(
        self, host: str, port: int
    ) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bool]:
        idle = self._idle.get((host, port))
        while idle:
            reader, writer = idle.pop()
            if not writer.is_closing() and not reader.at_eof():
                return reader, writer, True
        reader, writer = await asyncio.open_connection(host, port, limit=2**20)
        return reader, writer, False

    async def aclose(self) -> None:
        for connections in self._idle.values():
            for _reader, writer in connections:
                writer.close()
        self._idle.clear()


async def _read_answer(reader: asyncio.StreamReader) -> Answer:
    status_line = await reader.readuntil(b"\r\n")
    status = int(status_line.split(b" ", 2)[1])
    headers: dict[str, str] = {}
    while True:
        line = await reader.readuntil(b"\r\n")
        if line == b"\r\n":
            break
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    if headers.get("transfer-encoding", "").lower() == "chunked":
        chunks = []
        while True:
            size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
            chunk = await reader.readexactly(size + 2)
            if size == 0:
                break
            chunks.append(chunk[:-2])
        return Answer(status, headers, b"".join(chunks))
    length = int(headers.get("content-length", "0"))
    return Answer(status, headers, await reader.readexactly(length))
