"""The issuer's GitHub engine end to end: App credentials, the pull request of a fork's run,
and the optional live channel."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet, RSAKey

from issuer.sim import GitHubSim, SimSettings
from issuer.sim.serve import serve_sim
from tests.e2e.harness import GITHUB_TOKEN, ForkRun, bearer, fork_run, issuer_in_thread

SESSION = "web-session-" + "s" * 24


def _token_claims(http: httpx.Client, issuer_url: str, token: str) -> dict[str, Any]:
    keys = KeySet.import_key_set(http.get(f"{issuer_url}/.well-known/jwks").json())
    return dict(jwt.decode(token, keys).claims)


def _claim_and_exchange(
    http: httpx.Client, issuer_url: str, pr: ForkRun, *, print_in: str = "finished job"
) -> httpx.Response:
    claim = http.post(f"{issuer_url}/claim", json=pr.claim_body()).json()
    job = pr.job("claim")
    if print_in == "finished job":
        pr.print_and_finish(job, claim["challenge_line"])
    else:  # one step that prints, then waits for its token
        pr.sim.start_step(job, "Token", script="issuer token")
        pr.sim.print_line(job, claim["challenge_line"])
    return http.post(
        claim["exchange_url"],
        params={"wait": "15"},
        headers=bearer(claim),
        timeout=25,
    )


def test_a_fork_runs_pull_request_is_named_in_its_token(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    response = _claim_and_exchange(http, issuer_url, pr)
    assert response.status_code == 200, response.text
    claims = _token_claims(http, issuer_url, response.json()["token"])
    pulls = pr.sim.pull_requests(pr.upstream)
    assert len(pulls) == 1
    assert claims["pull_request_number"] == str(pulls[0].number)
    assert claims["base_ref"] == pulls[0].base_branch
    assert claims["ref"] == f"refs/pull/{pulls[0].number}/merge"


def test_the_issuer_reads_github_as_an_app_installation(http: httpx.Client, tmp_path: Path) -> None:
    key = RSAKey.generate_key(2048)
    key_file = tmp_path / "app.pem"
    key_file.write_bytes(key.as_pem(private=True))
    sim = GitHubSim(SimSettings(require_auth=True))
    sim.add_app(4711, key.as_pem(private=False).decode(), 815)
    pr = fork_run(sim)
    server = serve_sim(sim)
    try:
        with issuer_in_thread(
            server.url_of(0),
            github_tokens=(),
            github_app_id=4711,
            github_app_private_key=key.as_pem(private=True).decode(),
            github_app_installations=(815,),
        ) as (issuer_url, _config):
            response = _claim_and_exchange(http, issuer_url, pr)
    finally:
        server.stop()
    assert response.status_code == 200, response.text
    assert ("POST", "/app/installations/815/access_tokens", 201, True) in sim.request_log


def test_the_live_channel_sees_a_running_step_before_any_annotation(
    http: httpx.Client,
) -> None:
    sim = GitHubSim(SimSettings(annotation_timing="job_end"))
    sim.add_token(GITHUB_TOKEN)
    sim.add_web_session(SESSION)
    pr = fork_run(sim)
    server = serve_sim(sim)
    try:
        with issuer_in_thread(server.url_of(0), github_web_session=SESSION) as (url, _config):
            response = _claim_and_exchange(http, url, pr, print_in="running step")
            assert response.status_code == 200, response.text
            claims = _token_claims(http, url, response.json()["token"])
    finally:
        server.stop()
    assert claims["challenge_channel"] == "live"


def test_without_a_web_session_a_running_step_waits_for_its_job_to_complete(
    http: httpx.Client,
) -> None:
    sim = GitHubSim(SimSettings(annotation_timing="job_end"))
    sim.add_token(GITHUB_TOKEN)
    pr = fork_run(sim)
    server = serve_sim(sim)
    try:
        with issuer_in_thread(server.url_of(0)) as (url, _config):
            claim = http.post(f"{url}/claim", json=pr.claim_body()).json()
            job = pr.job("claim")
            sim.start_step(job, "Token", script="issuer token")
            sim.print_line(job, claim["challenge_line"])
            response = http.post(
                claim["exchange_url"],
                params={"wait": "3"},
                headers=bearer(claim),
                timeout=10,
            )
    finally:
        server.stop()
    assert response.status_code == 202
