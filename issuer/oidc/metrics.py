"""Prometheus metrics of the issuer (one registry per process).

GitHub's metrics live in :mod:`issuer.github.metrics`; ``GITHUB_REQUESTS`` is re-exported here.
"""

from prometheus_client import Counter, Gauge, Histogram

from issuer.github.metrics import GITHUB_REQUESTS

__all__ = ["CLAIMS", "EXCHANGES", "GITHUB_REQUESTS", "TOKENS"]

CLAIMS = Counter("issuer_claims_total", "Claims made, by outcome", ["outcome"])
EXCHANGES = Counter("issuer_exchanges_total", "Exchange answers, by outcome", ["outcome"])
TOKENS = Counter("issuer_tokens_issued_total", "Tokens issued, by challenge channel", ["channel"])
LOOKS = Counter("issuer_run_looks_total", "Looks at a run through GitHub, by outcome", ["outcome"])

# Appended for issue 7 (abuse controls, HTTP latency).
CLAIMS_REFUSED = Counter(
    "issuer_claims_refused_total",
    "Claims refused by abuse controls, by reason "
    "(address_rate, repository_rate, run_cap, repository_not_allowed)",
    ["reason"],
)
# Labelled by route *template* (``/exchange/{claim_id}``), never the raw path: a claim id in a
# path is a capability, and raw paths would make the label set unbounded.
HTTP_LATENCY = Histogram(
    "issuer_http_request_duration_seconds",
    "Time to answer an HTTP request, by route template and method",
    ["route", "method"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 20, 30, 45),
)
HTTP_REQUESTS = Counter(
    "issuer_http_requests_total",
    "HTTP requests answered, by route template, method and status",
    ["route", "method", "status"],
)
HTTP_IN_PROGRESS = Gauge(
    "issuer_http_requests_in_progress",
    "HTTP requests being answered (long polls included), by route template and method",
    ["route", "method"],
)
