"""``issuer demo``: the whole flow on loopback with nothing configured.

The GitHub simulator, the issuer (in-process store), a fork pull-request run played as the
relay pattern (examples/two-job.yml): ``build`` claims a relay slot and waits; ``relay``, in
parallel, prints the slot's challenge line and completes; ``build`` gets the token once
GitHub serves ``relay``'s log. The token is then verified as a relying party
would: through the issuer's discovery document and JWKS, over HTTP.
"""

from __future__ import annotations

import base64
import json
import logging
import secrets
import sys
from collections.abc import Callable
from typing import Any

import httpx
from joserfc import jwt
from joserfc.jwk import KeySet

from issuer.builder.demo import Stoppable, run_builder_steps
from issuer.client.workflow import RunIdentity, WorkflowClient
from issuer.oidc.app import create_app
from issuer.oidc.config import IssuerConfig
from issuer.oidc.service import IssuerService
from issuer.sim import GitHubSim, SimJob, SimRun, SimSettings
from issuer.sim.serve import serve_sim
from issuer.web.serving import BackgroundServer, bound_socket

AUDIENCE = "https://builder.example"
DEMO_GITHUB_TOKEN = "ghp_demo_" + "0" * 27


class Narrator:
    def __init__(self, total: int, out: Callable[[str], None]) -> None:
        self.total = total
        self.done = 0
        self.out = out

    def step(self, text: str) -> None:
        self.done += 1
        self.out(f"[{self.done}/{self.total}] {text}")

    def detail(self, text: str) -> None:
        self.out(f"      {text}")


def _unverified_claims(token: str) -> dict[str, Any]:
    segment = token.split(".")[1]
    return dict(json.loads(base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))))


def verify_through_discovery(token: str, issuer_url: str, audience: str) -> dict[str, Any]:
    """Verify like a relying party: discovery, then JWKS, then signature and claims."""
    with httpx.Client(timeout=5) as http:
        discovery = http.get(f"{issuer_url}/.well-known/openid-configuration").json()
        if discovery["issuer"] != issuer_url:
            raise ValueError("the discovery document names another issuer")
        keys = KeySet.import_key_set(http.get(discovery["jwks_uri"]).json())
    decoded = jwt.decode(token, keys, algorithms=["RS256"])
    jwt.JWTClaimsRegistry(
        iss={"essential": True, "value": issuer_url},
        aud={"essential": True, "value": audience},
        exp={"essential": True},
        sub={"essential": True},
    ).validate(decoded.claims)
    return dict(decoded.claims)


def run_demo(out: Callable[[str], None] = print) -> int:
    narrator = Narrator(14, out)
    logging.basicConfig(level=logging.WARNING, format="      issuer: %(message)s")
    logging.getLogger("issuer.oidc.claims").setLevel(logging.INFO)
    servers: list[Stoppable] = []
    try:
        return _run(narrator, servers)
    except Exception as error:  # the demo reports any failure and exits non-zero
        out(f"demo FAILED at step {narrator.done + 1}: {type(error).__name__}: {error}")
        return 1
    finally:
        for server in reversed(servers):
            server.stop()


def _run(narrator: Narrator, servers: list[Stoppable]) -> int:
    sim = GitHubSim(SimSettings(finalize_seconds=2.0))
    sim.add_token(DEMO_GITHUB_TOKEN)
    upstream = sim.add_repository("octo-org/octo-repo")
    fork = sim.add_repository("contributor/octo-repo", fork_of=upstream)
    github = serve_sim(sim)
    servers.append(github)
    narrator.step(
        f"GitHub simulator at {github.url_of(0)}; job logs served from {github.url_of(1)}"
    )

    issuer_socket = bound_socket()
    issuer_url = "http://{}:{}".format(*issuer_socket.getsockname()[:2])
    webhook_secret = secrets.token_hex(32)
    config = IssuerConfig(
        issuer_url=issuer_url,
        github_api_url=github.url_of(0),
        github_tokens=(DEMO_GITHUB_TOKEN,),
        poll_interval=1,
        github_webhook_secret=webhook_secret.encode(),
    )
    issuer = BackgroundServer(create_app(lambda: IssuerService.start(config)), [issuer_socket])
    servers.append(issuer.start())
    sim.deliver_to(f"{issuer_url}/github/webhook", webhook_secret)
    narrator.step(
        f"issuer at {issuer_url}, in-process store, a fresh RS256 signing key; GitHub's "
        "signed workflow_job and workflow_run deliveries go to its /github/webhook"
    )

    run = sim.create_run(upstream, head_repository=fork, actor="contributor")
    token, relay_job = relay_pattern(narrator, sim, run, issuer_url)

    claims = _unverified_claims(token)
    narrator.step("token issued; its claims:")
    for name in sorted(claims):
        narrator.detail(f"{name:26} {claims[name]}")

    verified = verify_through_discovery(token, issuer_url, AUDIENCE)
    expected = {
        "sub": f"repo:{upstream.full_name}:pull_request",
        "run_id": str(run.id),
        "job_id": str(relay_job.id),
        "head_repository": fork.full_name,
    }
    wrong = {
        name: verified.get(name) for name, value in expected.items() if verified.get(name) != value
    }
    if wrong:
        raise ValueError(f"unexpected claims: {wrong}")
    narrator.step("token verified through discovery and JWKS: signature, iss, aud, exp, claims")
    run_builder_steps(
        narrator,
        servers,
        issuer_url=issuer_url,
        token=token,
        audience=AUDIENCE,
        project=upstream.full_name,
    )
    narrator.detail("demo succeeded")
    return 0


def relay_pattern(
    narrator: Narrator, sim: GitHubSim, run: SimRun, issuer_url: str
) -> tuple[str, SimJob]:
    """examples/two-job.yml played on the simulator: `build` claims relay slot `build` and
    keeps the claim in its process; `relay`, in parallel, fetches the slot's public challenge
    line, prints it in its client step and completes; the issuer reads it in `relay`'s log and
    `build` gets the token. Answers the token and the relay job (the token's `job_id`)."""
    upstream = run.repository
    relay_job, build_job = sim.add_job(run, "relay"), sim.add_job(run, "build")
    narrator.step(
        f"pull request run {run.id} of {upstream.full_name} from the fork "
        f"{run.head_repository.full_name}: jobs 'relay' and 'build', in parallel"
    )
    identity = RunIdentity(upstream.full_name, str(run.id), str(run.run_attempt), "pull_request")
    builder = WorkflowClient(issuer_url, say=lambda line: narrator.detail(f"build: {line}"))
    relayer = WorkflowClient(issuer_url, say=lambda line: narrator.detail(f"relay: {line}"))
    sim.start_job(build_job)
    sim.start_step(build_job, "Fork OIDC token", script="issuer token --relay build")
    claim = builder.claim(identity, AUDIENCE, relay="build")
    narrator.step(
        "job 'build' claimed relay slot 'build': it keeps the claim (the secret capability) "
        "in its own process and prints nothing"
    )
    sim.start_job(relay_job)
    sim.start_step(relay_job, "Fork OIDC relay", script="issuer token relay --slot build")
    line = relayer.relay(identity, "build", timeout=30)
    sim.elapse(relay_job, 2.0)  # the client prints no sooner than 2 s into its step
    sim.print_line(relay_job, line)
    sim.finish_step(relay_job)
    sim.finish_job(relay_job)
    narrator.step("job 'relay' fetched the slot's public challenge line, printed it, completed:")
    narrator.detail(line)
    narrator.step(
        "job 'build' exchanges its claim; GitHub's delivery of 'relay' completed points the "
        "issuer at that job: it reads the job and its log through the API (a delivery is no proof)"
    )
    token = builder.exchange(claim.claim_id, timeout=60, relay="build")
    sim.print_line(build_job, f"::add-mask::{token}")
    return token, relay_job


if __name__ == "__main__":
    sys.exit(run_demo())
