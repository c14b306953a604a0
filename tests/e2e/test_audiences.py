from __future__ import annotations

import httpx

from issuer.web.serving import BackgroundServer
from tests.e2e.harness import ForkRun, bearer, issuer_in_thread


def test_an_audience_outside_the_allowed_ones_is_refused(
    http: httpx.Client, github: BackgroundServer, pr: ForkRun
) -> None:
    with issuer_in_thread(github.url_of(0), allowed_audiences=("https://a.example",)) as (url, _):
        refused = http.post(f"{url}/claim", json=pr.claim_body(audience="https://b.example"))
        assert refused.status_code == 400
        assert refused.json()["error"] == "invalid_audience"
        allowed = http.post(f"{url}/claim", json=pr.claim_body(audience="https://a.example"))
        assert allowed.status_code == 201


def test_an_expired_claim_answers_410(
    http: httpx.Client, github: BackgroundServer, pr: ForkRun
) -> None:
    with issuer_in_thread(github.url_of(0), claim_ttl=1) as (url, _):
        claim = http.post(f"{url}/claim", json=pr.claim_body()).json()
        pr.job("claim")
        import time

        time.sleep(1.2)
        response = http.post(claim["exchange_url"], headers=bearer(claim))
        assert response.status_code == 410
        assert response.json()["error"] == "claim_expired"
