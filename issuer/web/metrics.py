"""HTTP metrics of a service's requests (one registry per process)."""

from prometheus_client import Counter, Gauge, Histogram

# Labelled by route *template* (``/builders/{builder_id}/release``), never the raw path: a
# path may hold a capability, and raw paths would make the label set unbounded.
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
