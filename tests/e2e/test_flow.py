"""The issuer's contract (API.md section 1) over real sockets, against the GitHub simulator."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest
from joserfc import jwt
from joserfc.jwk import KeySet
from joserfc.jwt import JWTClaimsRegistry

from issuer.sim import GitHubSim
from tests.e2e.harness import GITHUB_TOKEN, ForkRun, bearer, fork_run


def make_claim(http: httpx.Client, issuer_url: str, body: dict[str, Any]) -> dict[str, Any]:
    response = http.post(f"{issuer_url}/claim", json=body)
    assert response.status_code == 201, response.text
    return dict(response.json())


def exchange(http: httpx.Client, claim: dict[str, Any], wait: float = 0) -> httpx.Response:
    return http.post(claim["exchange_url"], headers=bearer(claim), params={"wait": str(wait)})


def verified_claims(http: httpx.Client, issuer_url: str, token: str) -> dict[str, Any]:
    discovery = http.get(f"{issuer_url}/.well-known/openid-configuration").json()
    keys = KeySet.import_key_set(http.get(discovery["jwks_uri"]).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    return dict(decoded.claims)


def test_a_claim_answers_a_code_a_line_and_a_secret_exchange_url(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    assert len(claim["claim_id"]) >= 22 and len(claim["challenge_code"]) >= 22
    assert claim["claim_id"] != claim["challenge_code"]
    assert claim["challenge_code"] in claim["challenge_line"]
    assert claim["claim_id"] not in claim["challenge_line"]
    assert claim["exchange_url"] == f"{issuer_url}/exchange"
    assert claim["expires_at"] > 0 and claim["poll_interval"] >= 1


def test_a_line_printed_by_a_finished_job_yields_a_token(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body(audience="https://builder.example"))
    claim_job = pr.job("claim")
    pr.print_and_finish(claim_job, claim["challenge_line"])
    pr.job("build")
    response = exchange(http, claim, wait=10)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["token_type"] == "urn:ietf:params:oauth:token-type:id_token"
    assert body["expires_in"] == 300
    claims = verified_claims(http, issuer_url, body["token"])
    run, upstream, fork = pr.run, pr.upstream, pr.fork
    assert claims["iss"] == issuer_url
    assert claims["aud"] == "https://builder.example"
    assert claims["sub"] == f"repo:{upstream.full_name}:pull_request"
    assert claims["exp"] - claims["iat"] == 300
    assert claims["iat"] - claims["nbf"] == 300  # set back, as GitHub does (README)
    assert claims["repository"] == upstream.full_name
    assert claims["repository_id"] == str(upstream.id)
    assert claims["repository_owner"] == upstream.owner_login
    assert claims["repository_owner_id"] == str(upstream.owner_id)
    assert claims["repository_visibility"] == "public"
    assert claims["run_id"] == str(run.id)
    assert claims["run_number"] == str(run.run_number)
    assert claims["run_attempt"] == "1"
    assert claims["event_name"] == "pull_request"
    assert claims["head_repository"] == fork.full_name
    assert claims["head_repository_id"] == str(fork.id)
    assert claims["head_repository_owner"] == fork.owner_login
    assert claims["head_repository_owner_id"] == str(fork.owner_id)
    assert claims["actor"] == run.actor.login
    assert claims["actor_id"] == str(run.actor.id)
    assert claims["job_id"] == str(claim_job.id)
    assert claims["runner_environment"] == "github-hosted"
    assert claims["challenge_channel"] == "log"
    for name in ("head_sha", "head_ref", "actor_id", "workflow", "jti"):
        assert isinstance(claims[name], str) and claims[name]


def test_the_token_header_names_its_key_and_algorithm(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    token = exchange(http, claim, wait=10).json()["token"]
    header = jwt.decode(
        token,
        KeySet.import_key_set(http.get(f"{issuer_url}/.well-known/jwks").json()),
        algorithms=["RS256"],
    ).header
    assert header["alg"] == "RS256"
    jwks_kids = [key["kid"] for key in http.get(f"{issuer_url}/.well-known/jwks").json()["keys"]]
    assert header["kid"] in jwks_kids


def test_the_audience_defaults_to_the_issuer_url(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    token = exchange(http, claim, wait=10).json()["token"]
    assert verified_claims(http, issuer_url, token)["aud"] == issuer_url


def test_a_pending_claim_answers_202_with_retry_after_and_stays_usable(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    job = pr.job("claim")
    sim.start_step(job, "Claim", script="issuer token claim")
    sim.elapse(job, 2.0)
    sim.print_line(job, claim["challenge_line"])
    pending = exchange(http, claim)
    assert pending.status_code == 202
    assert pending.json()["status"] == "pending"
    assert pending.json()["retry_after"] >= 1
    assert int(pending.headers["Retry-After"]) >= 1
    assert "error_description" in pending.json()
    sim.finish_step(job)
    sim.finish_job(job)
    assert exchange(http, claim, wait=10).status_code == 200


@pytest.mark.parametrize("running_log", ["api_404", "blob_404"])
def test_a_running_jobs_unreadable_log_leaves_the_claim_pending(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim, running_log: str
) -> None:
    sim.settings.running_log = running_log  # type: ignore[assignment]
    claim = make_claim(http, issuer_url, pr.claim_body())
    job = pr.job("claim")
    sim.start_step(job, "Claim", script="issuer token claim")
    sim.elapse(job, 2.0)
    sim.print_line(job, claim["challenge_line"])
    assert exchange(http, claim, wait=1.5).status_code == 202
    sim.finish_step(job)
    sim.finish_job(job)
    assert exchange(http, claim, wait=10).status_code == 200


def test_a_log_still_being_finalised_is_waited_for(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    sim.settings.finalize_seconds = 2.0
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    assert exchange(http, claim).status_code == 202
    assert exchange(http, claim, wait=10).status_code == 200


def test_a_claim_yields_one_token(http: httpx.Client, issuer_url: str, pr: ForkRun) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    first = exchange(http, claim, wait=10)
    assert first.status_code == 200
    again = exchange(http, claim)
    jti = {verified_claims(http, issuer_url, r.json()["token"])["jti"] for r in (first, again)}
    assert len(jti) == 1


def test_the_line_printed_in_another_run_does_not_count(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    other = fork_run(sim)
    pr.job("waiting")
    other.print_and_finish(other.job("claim"), claim["challenge_line"])
    assert exchange(http, claim, wait=1.5).status_code == 202


def test_the_line_of_an_earlier_attempt_does_not_count_for_a_later_one(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    first = make_claim(http, issuer_url, pr.claim_body(run_attempt=1))
    pr.print_and_finish(pr.job("claim"), first["challenge_line"])
    sim.finish_run(pr.run)
    sim.rerun(pr.run)
    pr.job("claim")
    second = make_claim(http, issuer_url, pr.claim_body(run_attempt=2))
    response = exchange(http, second, wait=1.5)
    assert response.status_code == 202
    # and the first attempt, now completed, is refused
    assert exchange(http, first).json()["error"] == "run_rejected"


def test_a_claim_without_attempt_uses_the_latest_attempt(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    sim.finish_run(pr.run)
    sim.rerun(pr.run)
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    token = exchange(http, claim, wait=10).json()["token"]
    assert verified_claims(http, issuer_url, token)["run_attempt"] == "2"


def rejection(http: httpx.Client, issuer_url: str, body: dict[str, Any]) -> dict[str, Any]:
    claim = make_claim(http, issuer_url, body)
    response = exchange(http, claim)
    assert response.status_code == 403, response.text
    assert response.json()["error"] == "run_rejected"
    return dict(response.json())


def test_a_run_of_another_event_is_rejected(
    http: httpx.Client, issuer_url: str, sim: GitHubSim
) -> None:
    push = fork_run(sim, event="push")
    push.job("build")
    assert "push" in rejection(http, issuer_url, push.claim_body())["error_description"]


def test_a_private_repository_is_rejected(
    http: httpx.Client, issuer_url: str, sim: GitHubSim
) -> None:
    private = fork_run(sim, private=True)
    private.job("build")
    rejection(http, issuer_url, private.claim_body())


def test_a_completed_run_is_rejected(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    sim.finish_run(pr.run)
    response = exchange(http, claim, wait=5)
    assert response.status_code == 403
    assert "completed" in response.json()["error_description"]


def test_a_run_named_under_another_repository_is_rejected(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    pr.job("build")
    other = fork_run(sim)
    rejection(http, issuer_url, pr.claim_body(repository=other.upstream.full_name))


def test_an_unknown_run_is_rejected(http: httpx.Client, issuer_url: str, pr: ForkRun) -> None:
    rejection(http, issuer_url, pr.claim_body(run_id=999))


def test_a_rejected_claim_is_not_used_up(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body(run_attempt=2))
    assert exchange(http, claim).status_code == 403
    sim.finish_run(pr.run)
    sim.rerun(pr.run)
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    assert exchange(http, claim, wait=10).status_code == 200


def test_github_failing_answers_503_with_retry_after_and_keeps_the_claim(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    """Pending while the issuer reads again within the poll interval; 503 once its backoff
    (0.5 s, doubling) outgrows that."""
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    sim.fail_next(10, status=502)
    answers = [exchange(http, claim)]
    while answers[-1].status_code == 202 and len(answers) < 100:
        time.sleep(0.2)
        answers.append(exchange(http, claim))
    failed = answers[-1]
    assert failed.status_code == 503
    assert failed.json()["error"] == "github_unavailable"
    assert int(failed.headers["Retry-After"]) >= 1
    sim.fail_next(0)
    assert exchange(http, claim, wait=10).status_code == 200


def test_a_secondary_rate_limit_answers_503_with_githubs_retry_after(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    sim.fail_next(1, secondary=True, retry_after="7")
    failed = exchange(http, claim)
    assert failed.status_code == 503
    assert failed.headers["Retry-After"] == "7"


def test_a_long_poll_returns_the_token_once_the_line_becomes_readable(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    import threading

    claim = make_claim(http, issuer_url, pr.claim_body())
    job = pr.job("claim")
    sim.start_step(job, "Claim", script="issuer token claim")
    sim.elapse(job, 2.0)
    sim.print_line(job, claim["challenge_line"])
    timer = threading.Timer(1.5, lambda: (sim.finish_step(job), sim.finish_job(job)))
    timer.start()
    try:
        assert exchange(http, claim, wait=15).status_code == 200
    finally:
        timer.cancel()


def test_credentials_are_sent_to_the_api_and_never_to_the_log_host(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    assert exchange(http, claim, wait=10).status_code == 200
    blobs = [entry for entry in sim.request_log if entry[1].startswith("/actions-results/")]
    api = [entry for entry in sim.request_log if entry[1].startswith("/repos/")]
    assert blobs and all(not had_auth for (_m, _p, _s, had_auth) in blobs)
    assert api and all(had_auth for (_m, _p, _s, had_auth) in api)


def test_repeated_looks_are_conditional_requests_that_cost_nothing(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.job("claim")
    assert exchange(http, claim).status_code == 202
    spent = sim.counted_requests(GITHUB_TOKEN)
    assert exchange(http, claim, wait=2.5).status_code == 202
    assert sim.counted_requests(GITHUB_TOKEN) == spent
    assert any(status == 304 for (_m, _p, status, _a) in sim.request_log)


def test_every_page_of_a_large_matrix_is_read(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    for index in range(120):
        pr.job(f"matrix ({index})", started=False)
    last = pr.job("claim")
    pr.print_and_finish(last, claim["challenge_line"])
    response = exchange(http, claim, wait=10)
    assert response.status_code == 200
    assert verified_claims(http, issuer_url, response.json()["token"])["job_id"] == str(last.id)


def test_discovery_names_the_issuer_and_its_jwks(http: httpx.Client, issuer_url: str) -> None:
    discovery = http.get(f"{issuer_url}/.well-known/openid-configuration").json()
    assert discovery["issuer"] == issuer_url
    assert discovery["jwks_uri"] == f"{issuer_url}/.well-known/jwks"
    assert "RS256" in discovery["id_token_signing_alg_values_supported"]
    keys = http.get(discovery["jwks_uri"]).json()["keys"]
    assert keys and all(key["use"] == "sig" and "d" not in key for key in keys)


def test_the_issuer_url_never_comes_from_the_host_header(
    http: httpx.Client, issuer_url: str
) -> None:
    discovery = http.get(
        f"{issuer_url}/.well-known/openid-configuration", headers={"Host": "evil.example"}
    ).json()
    assert discovery["issuer"] == issuer_url


def test_health_and_readiness_answer_and_metrics_are_not_public(
    http: httpx.Client, issuer_url: str
) -> None:
    assert http.get(f"{issuer_url}/healthz").status_code == 200
    assert http.get(f"{issuer_url}/readyz").json()["store"] is True
    assert http.get(f"{issuer_url}/metrics").status_code == 404  # their own listener only


def test_json_errors_for_unknown_routes_and_methods(http: httpx.Client, issuer_url: str) -> None:
    missing = http.get(f"{issuer_url}/nope")
    assert missing.status_code == 404 and missing.json()["error"] == "not_found"
    wrong = http.get(f"{issuer_url}/claim")
    assert wrong.status_code == 405 and json.loads(wrong.text)["error"] == "method_not_allowed"


def test_a_challenge_written_into_the_script_counts_only_when_printed(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    claim = make_claim(http, issuer_url, pr.claim_body())
    payload = claim["challenge_line"].replace("::notice::", "")
    job = pr.job("claim")
    sim.start_step(job, "Echo", script=f"set -e\n{payload}\nexit 1")  # never printed
    sim.finish_step(job, conclusion="failure")
    sim.finish_job(job, conclusion="failure")
    assert payload in sim.job_log(job)  # the script's echo holds the exact line...
    assert exchange(http, claim, wait=1.5).status_code == 202  # ...which proves nothing


def test_an_exhausted_rate_limit_answers_503_until_githubs_reset(
    http: httpx.Client, issuer_url: str, pr: ForkRun, sim: GitHubSim
) -> None:
    sim.add_token(GITHUB_TOKEN, limit=1)
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    failed = exchange(http, claim)
    assert failed.status_code == 503
    assert failed.json()["error"] == "github_unavailable"
    assert int(failed.headers["Retry-After"]) > 60  # the reset is up to an hour away
    before = sim.counted_requests(GITHUB_TOKEN)
    assert exchange(http, claim).status_code == 503
    assert sim.counted_requests(GITHUB_TOKEN) == before  # a resting credential is not used


def test_a_fresh_token_is_valid_to_a_verifier_whose_clock_runs_behind(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    """node `jose` checks `nbf` with no leeway by default: a verifier 5 s behind the issuer
    must still accept a token signed just now."""
    claim = make_claim(http, issuer_url, pr.claim_body())
    pr.print_and_finish(pr.job("claim"), claim["challenge_line"])
    claims = verified_claims(http, issuer_url, exchange(http, claim, wait=10).json()["token"])
    behind = JWTClaimsRegistry(now=claims["iat"] - 5, leeway=0)
    behind.validate_nbf(claims["nbf"])  # raises if nbf is in this verifier's future
