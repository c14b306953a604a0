"""Prometheus metrics of the issuer (one registry per process).

GitHub's metrics live in :mod:`issuer.github.metrics` (``GITHUB_REQUESTS`` is re-exported
here), the HTTP latency metrics both services share in :mod:`issuer.web.metrics`.
"""

from prometheus_client import Counter

from issuer.github.metrics import GITHUB_REQUESTS

__all__ = ["CLAIMS", "EXCHANGES", "GITHUB_REQUESTS", "TOKENS", "WEBHOOK_DELIVERIES"]

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

# Issue 16: GitHub's webhook deliveries.
WEBHOOK_DELIVERIES = Counter(
    "issuer_webhook_deliveries_total",
    "GitHub webhook deliveries, by outcome (taken, duplicate, ignored, invalid_signature, "
    "invalid_request)",
    ["outcome"],
)
