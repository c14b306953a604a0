"""The log download host: signed, expiring URLs served the way Azure blob storage serves them.

GitHub's job-log endpoint answers 302 to a SAS URL on another host. That host knows nothing of
GitHub tokens: a request carrying `Authorization` is refused, which is how tests prove the
issuer never forwards its credentials there.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import math
import uuid
from datetime import UTC, datetime
from email.utils import formatdate
from urllib.parse import urlencode
from xml.sax.saxutils import escape

from starlette.requests import Request
from starlette.responses import Response

from issuer.sim.simulator import GitHubSim

BLOB_ROUTE = "/actions-results/{container}/workflow-job-run-{job_id:int}/logs/job/job-logs.txt"
_VERSION = "2025-05-05"


def _sign(key: bytes, path: str, expiry: str) -> str:
    digest = hmac.new(key, f"{path}\n{expiry}".encode(), hashlib.sha256).digest()
    return base64.b64encode(digest).decode()


def _iso(when: float) -> str:
    return datetime.fromtimestamp(when, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _http_date(when: float) -> str:
    return formatdate(when, usegmt=True)


def blob_url(sim: GitHubSim, base: str, job_id: int) -> str:
    """A URL for the job's log that stops working `blob_url_ttl` seconds from now."""
    container = uuid.uuid5(uuid.NAMESPACE_URL, f"{job_id}:{sim.blob_key.hex()}")
    path = f"/actions-results/{container}/workflow-job-run-{job_id}/logs/job/job-logs.txt"
    now = sim.clock()
    expiry = _iso(math.ceil(now + sim.settings.blob_url_ttl))
    query = {
        "rsct": "text/plain",
        "se": expiry,
        "sig": _sign(sim.blob_key, path, expiry),
        "sp": "r",
        "spr": "https",
        "sr": "b",
        "st": _iso(math.floor(now) - 300),
        "sv": _VERSION,
    }
    return f"{base.rstrip('/')}{path}?{urlencode(query)}"


def azure_error(status: int, code: str, message: str, detail: str | None = None) -> Response:
    """An Azure Storage error: XML body, `x-ms-error-code` header."""
    request_id = str(uuid.uuid4())
    text = f"{message}\nRequestId:{request_id}\nTime:{datetime.now(UTC).isoformat()}"
    extra = (
        f"<AuthenticationErrorDetail>{escape(detail)}</AuthenticationErrorDetail>" if detail else ""
    )
    body = (
        '<?xml version="1.0" encoding="utf-8"?>'
        f"<Error><Code>{code}</Code><Message>{escape(text)}</Message>{extra}</Error>"
    )
    return Response(
        body,
        status_code=status,
        media_type="application/xml",
        headers={"x-ms-error-code": code, "x-ms-request-id": request_id, "x-ms-version": _VERSION},
    )


async def serve_blob(request: Request) -> Response:
    """GET on a signed log URL. Downloads count against no rate limit and see no latency."""
    sim: GitHubSim = request.app.state.sim
    if "authorization" in request.headers:
        return azure_error(
            400,
            "InvalidAuthenticationInfo",
            "Authentication information is not given in the correct format. "
            "Check the value of Authorization header.",
        )
    expiry, signature = request.query_params.get("se"), request.query_params.get("sig")
    if not expiry or not signature:
        return azure_error(
            403,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Make sure the value of Authorization "
            "header is formed correctly including the signature.",
            "Signature fields not well formed.",
        )
    expected = _sign(sim.blob_key, request.url.path, expiry)
    if not hmac.compare_digest(expected, signature):
        return azure_error(
            403,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Make sure the value of Authorization "
            "header is formed correctly including the signature.",
            "Signature did not match.",
        )
    expires_at = datetime.strptime(expiry, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    now = sim.clock()
    if now >= expires_at:
        return azure_error(
            403,
            "AuthenticationFailed",
            "Server failed to authenticate the request. Make sure the value of Authorization "
            "header is formed correctly including the signature.",
            f"Signed expiry time [{_http_date(expires_at)}] must be after signed start time "
            f"[{_http_date(now)}]",
        )
    job = sim.job(request.path_params["job_id"])
    if job is None or sim.log_state(job) != "ready":
        return azure_error(404, "BlobNotFound", "The specified blob does not exist.")
    body = sim.job_log(job).encode("utf-8")
    return Response(
        body if request.method == "GET" else b"",
        media_type="text/plain; charset=utf-8",
        headers={
            "content-length": str(len(body)),
            "etag": f'"0x{hashlib.sha256(body).hexdigest()[:15].upper()}"',
            "last-modified": _http_date(job.completed_at or now),
            "x-ms-blob-type": "BlockBlob",
            "x-ms-version": _VERSION,
            "x-ms-request-id": str(uuid.uuid4()),
        },
    )
