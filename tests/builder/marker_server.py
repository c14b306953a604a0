"""A TCP server that answers each connection with one line (its marker) and closes it: what a
build's step reaches, if it reaches it. Runnable as ``python -m tests.builder.marker_server
--port P --marker M`` inside another network namespace (it prints ``ready`` once listening)."""

from __future__ import annotations

import argparse
import contextlib
import socket
import threading


class MarkerServer:
    """Listens on ``host`` (port 0: a free one) in a thread of this process."""

    def __init__(self, host: str, marker: str, port: int = 0) -> None:
        self.marker = marker
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, port))
        self._sock.listen(16)
        self.port: int = self._sock.getsockname()[1]
        self._thread = threading.Thread(target=self.serve, daemon=True)

    def start(self) -> MarkerServer:
        self._thread.start()
        return self

    def serve(self) -> None:
        while True:
            try:
                connection, _ = self._sock.accept()
            except OSError:
                return  # closed
            with connection, contextlib.suppress(OSError):
                connection.sendall(f"{self.marker}\n".encode())

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        if self._thread.is_alive():
            self._thread.join(timeout=5)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--marker", required=True)
    args = parser.parse_args()
    server = MarkerServer("0.0.0.0", args.marker, args.port)  # noqa: S104  (its own namespace)
    print("ready", flush=True)
    server.serve()


if __name__ == "__main__":
    main()
