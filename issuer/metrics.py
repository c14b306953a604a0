"""Prometheus metrics of the issuer (one registry per process)."""

from prometheus_client import Counter

CLAIMS = Counter("issuer_claims_total", "Claims made, by outcome", ["outcome"])
EXCHANGES = Counter("issuer_exchanges_total", "Exchange answers, by outcome", ["outcome"])
TOKENS = Counter("issuer_tokens_issued_total", "Tokens issued, by challenge channel", ["channel"])
LOOKS = Counter("issuer_run_looks_total", "Looks at a run through GitHub, by outcome", ["outcome"])
GITHUB_REQUESTS = Counter(
    "issuer_github_requests_total",
    "Requests to GitHub's REST API, by endpoint, status and credential",
    ["endpoint", "status", "credential"],
)
