"""Serving the simulator on loopback: one socket for the API, another as the blob host."""

from __future__ import annotations

import time

from issuer.sim.app import create_sim_app
from issuer.sim.simulator import GitHubSim
from issuer.web.serving import BackgroundServer, bound_socket


def serve_sim(sim: GitHubSim, host: str = "127.0.0.1", port: int = 0) -> BackgroundServer:
    """Start serving `sim`: `url_of(0)` is the API host, `url_of(1)` the blob host the job-log
    302s point at (a different host:port, as on GitHub)."""
    # GitHub's stand-in, not a service: httptools when installed (the test extra has it),
    # because the simulator's HTTP parsing is a third of its CPU, taken from the issuer's
    # replicas when a benchmark shares the machine with them.
    server = BackgroundServer(
        create_sim_app(sim), sockets=[bound_socket(host, port), bound_socket(host, 0)], http="auto"
    )
    sim.blob_base_url = server.url_of(1)
    sim.api_base_url = server.url_of(0)
    return server.start()


def main_github_sim(
    port: int,
    host: str = "127.0.0.1",
    *,
    webhook_url: str | None = None,
    webhook_secret: str | None = None,
) -> None:
    """`issuer github-sim`: serve an empty simulator in the foreground until Ctrl-C; with
    `webhook_url` (and its secret), sending webhook deliveries there."""
    sim = GitHubSim()
    if webhook_url is not None:
        sim.deliver_to(webhook_url, webhook_secret)
    server = serve_sim(sim, host=host, port=port)
    if host in ("0.0.0.0", "::"):  # noqa: S104
        # 0.0.0.0 is no address to send a client to: log downloads go to the API's own
        # socket, at whatever name the client reached it by.
        sim.blob_base_url = None
        sim.api_base_url = None
    print(f"GitHub API:   {server.url_of(0)}{sim.api_prefix}", flush=True)
    print(f"Log blobs:    {server.url_of(1)}", flush=True)
    print(
        f"Control API:  {server.url_of(0)}/_sim/  (POST /_sim/repos, /_sim/runs, ...)", flush=True
    )
    if webhook_url is not None:
        print(f"Webhooks to:  {webhook_url}", flush=True)
    print("Press Ctrl-C to stop.", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
