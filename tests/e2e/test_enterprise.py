"""GitHub Enterprise Server: the REST API lives under /api/v3."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
from joserfc.jwk import RSAKey

from issuer.oidc.config import IssuerConfig
from issuer.oidc.github_access import github_client_from_config
from issuer.sim import GitHubSim, SimSettings
from issuer.sim.serve import serve_sim
from issuer.store import MemoryStore
from tests.e2e.harness import GITHUB_TOKEN, bearer, fork_run, issuer_in_thread


def test_the_whole_flow_works_against_an_api_under_a_path_prefix(http: httpx.Client) -> None:
    sim = GitHubSim(SimSettings(), api_prefix="/api/v3")
    sim.add_token(GITHUB_TOKEN)
    pr = fork_run(sim)
    server = serve_sim(sim)
    try:
        with issuer_in_thread(f"{server.url_of(0)}/api/v3") as (url, _config):
            claim = http.post(f"{url}/claim", json=pr.claim_body()).json()
            pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
            response = http.post(
                claim["exchange_url"], headers=bearer(claim), params={"wait": "10"}
            )
            assert response.status_code == 200, response.text
    finally:
        server.stop()
    assert all(
        path.startswith(("/api/v3/", "/actions-results/")) for _m, path, _s, _a in sim.request_log
    )


def test_app_installation_credentials_work_against_an_api_under_a_path_prefix(
    tmp_path: Path,
) -> None:
    key = RSAKey.generate_key(2048)
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(key.as_pem(private=True))
    sim = GitHubSim(SimSettings(require_auth=True), api_prefix="/api/v3")
    sim.add_app(4711, key.as_pem(private=False).decode(), 815)
    pr = fork_run(sim)
    job = pr.job("claim")
    pr.print_and_finish(job, "printed by the claim job")
    server = serve_sim(sim)
    config = IssuerConfig.from_env(
        {
            "ISSUER_URL": "https://issuer.example",
            "ISSUER_GITHUB_API_URL": f"{server.url_of(0)}/api/v3",
            "ISSUER_GITHUB_APP_ID": "4711",
            "ISSUER_GITHUB_APP_PRIVATE_KEY_FILE": str(key_file),
            "ISSUER_GITHUB_APP_INSTALLATIONS": "815",
        }
    )

    async def read() -> tuple[int, str | None]:
        github = github_client_from_config(config, MemoryStore())
        try:
            run = await github.get_json(f"/repos/{pr.upstream.full_name}/actions/runs/{pr.run.id}")
            return run.body["id"], await github.download_log(pr.upstream.full_name, job.id)
        finally:
            await github.aclose()

    try:
        run_id, log = asyncio.run(read())
    finally:
        server.stop()
    assert run_id == pr.run.id
    assert log is not None and "printed by the claim job" in log
    assert ("POST", "/api/v3/app/installations/815/access_tokens", 201, True) in sim.request_log
    assert all(
        path.startswith(("/api/v3/", "/actions-results/")) for _m, path, _s, _a in sim.request_log
    )
