"""``/metrics`` on a listener of its own, never on a service's public port.

The metrics show each GitHub credential's remaining budget and what the services are doing:
for the operator's Prometheus, not for whoever reaches the service. Each service serves them
on ``ISSUER_METRICS_ADDRESS`` / ``BUILDER_METRICS_ADDRESS`` (loopback by default) with
prometheus_client's own server, in a thread beside the service's event loop.
"""

from __future__ import annotations

import ipaddress

import prometheus_client

from issuer.web.settings import ConfigError

Address = tuple[str, int]


def parse_address(variable: str, raw: str, default: Address) -> Address:
    """``HOST:PORT`` (``[V6]:PORT`` for IPv6) from a setting; ``default`` when empty."""
    value = raw.strip()
    if not value:
        return default
    host, sep, port = value.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 1 <= int(port) <= 65535:
        raise ConfigError(variable, "must be HOST:PORT, e.g. 127.0.0.1:9101 or [::1]:9101")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        raise ConfigError(
            variable, "must name the host by its IP address, e.g. 127.0.0.1:9101"
        ) from None
    return host, int(port)


def show_address(address: Address) -> str:
    host, port = address
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def serve_metrics(variable: str, address: Address) -> None:
    """Serve ``/metrics`` on ``address`` for the rest of the process; raises ConfigError
    naming ``variable`` when it cannot listen there."""
    host, port = address
    try:
        prometheus_client.start_http_server(port, addr=host)
    except OSError as error:
        reason = error.strerror or type(error).__name__
        raise ConfigError(variable, f"cannot listen on {show_address(address)}: {reason}") from None
