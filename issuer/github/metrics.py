"""Prometheus metrics of the GitHub-access layer (one registry per process).

- ``issuer_github_requests_total{endpoint,status,credential}``: every REST request; the share
  of ``status="304"`` is what conditional requests save.
- ``issuer_github_conditional_requests_total{result}``: requests sent with ``If-None-Match``,
  ``hit`` (304, free) or ``miss`` (a full answer that counted).
- ``issuer_github_budget_remaining{credential}``, ``issuer_github_budget_limit{credential}``:
  GitHub's ``x-ratelimit-remaining`` and ``-limit`` as last seen by this process.
- ``issuer_github_rests_total{credential,reason}``: a credential set aside (primary or
  secondary rate limit, refused credential).
- ``issuer_github_web_requests_total{endpoint,status}``: the web-UI live-log channel.
- ``issuer_github_points_total{credential,priority}``: points drawn under the secondary
  limit (:mod:`issuer.github.pacing`), by the priority of the request that drew them.
- ``issuer_github_pacing_wait_seconds_total{priority}``: seconds requests slept waiting for
  points; its rate is how many requests wait at once, on average.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

GITHUB_REQUESTS = Counter(
    "issuer_github_requests_total",
    "Requests to GitHub's REST API, by endpoint, status and credential",
    ["endpoint", "status", "credential"],
)
GITHUB_CONDITIONAL = Counter(
    "issuer_github_conditional_requests_total",
    "Conditional REST requests (If-None-Match): hit = 304, which GitHub does not count",
    ["result"],
)
GITHUB_BUDGET_REMAINING = Gauge(
    "issuer_github_budget_remaining",
    "Requests left in the credential's rate-limit window, as GitHub last said",
    ["credential"],
)
GITHUB_BUDGET_LIMIT = Gauge(
    "issuer_github_budget_limit",
    "The credential's hourly rate limit, as GitHub last said",
    ["credential"],
)
GITHUB_RESTS = Counter(
    "issuer_github_rests_total",
    "Times a credential was set aside, by reason",
    ["credential", "reason"],
)
GITHUB_WEB_REQUESTS = Counter(
    "issuer_github_web_requests_total",
    "Requests to GitHub's web UI by the live-log channel, by endpoint and status",
    ["endpoint", "status"],
)
GITHUB_POINTS = Counter(
    "issuer_github_points",
    "Points drawn from a credential's budget under GitHub's secondary limit, by priority",
    ["credential", "priority"],
)
GITHUB_PACING_WAIT = Counter(
    "issuer_github_pacing_wait_seconds",
    "Seconds requests slept waiting for points under GitHub's secondary limit, by priority",
    ["priority"],
)
