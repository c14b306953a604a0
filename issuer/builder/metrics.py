"""Prometheus metrics of the builder service (one registry per process)."""

from prometheus_client import Counter, Gauge

EXCHANGES = Counter(
    "builder_exchanges_total", "Token exchanges, by outcome and reason", ["outcome", "reason"]
)
BUILDERS_STARTED = Counter(
    "builder_builders_started_total", "Builders started, by backend", ["backend"]
)
BUILDERS_STOPPED = Counter(
    "builder_builders_stopped_total", "Builders stopped, by reason", ["reason"]
)
BUILDERS_LIVE = Gauge("builder_builders_live", "Builders this replica runs now")
