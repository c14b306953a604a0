"""GitHub Enterprise Server: the REST API lives under /api/v3."""

from __future__ import annotations

import httpx

from issuer.sim import GitHubSim, SimSettings
from issuer.sim.serve import serve_sim
from tests.e2e.harness import GITHUB_TOKEN, fork_run, issuer_in_thread


def test_the_whole_flow_works_against_an_api_under_a_path_prefix(http: httpx.Client) -> None:
    sim = GitHubSim(SimSettings(), api_prefix="/api/v3")
    sim.add_token(GITHUB_TOKEN)
    pr = fork_run(sim)
    server = serve_sim(sim)
    try:
        with issuer_in_thread(f"{server.url_of(0)}/api/v3") as (url, _config):
            claim = http.post(f"{url}/claim", json=pr.claim_body()).json()
            pr.print_and_finish(pr.job("claim"), claim["challenge_line"].replace("::notice::", ""))
            response = http.post(claim["exchange_url"], params={"wait": "10"})
            assert response.status_code == 200, response.text
    finally:
        server.stop()
    assert all(
        path.startswith(("/api/v3/", "/actions-results/")) for _m, path, _s, _a in sim.request_log
    )
