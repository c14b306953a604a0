"""No secret (token, App key or JWT, installation token, web session) in logs or reprs."""

from __future__ import annotations

import asyncio
import logging

import pytest
from joserfc.jwk import RSAKey

from issuer.github.app_auth import GitHubApp
from issuer.github.credentials import InstallationCredential, TokenCredential
from issuer.github.errors import GitHubError
from issuer.github.facts import JobFacts
from issuer.github.live import LiveLogChannel
from issuer.oidc.challenge import codes_in_lines
from issuer.sim import GitHubSim, SimRun
from tests.github.conftest import APP_ID, INSTALLATION_ID, MakeClient
from tests.github.support import UPSTREAM, WEB, RecordingTransport
from tests.sim.support import FakeClock

TOKEN = "ghp_never_logged_" + "t" * 20
BAD_TOKEN = "ghp_refused_" + "b" * 20
SESSION = "web_session_never_logged_" + "s" * 20


@pytest.mark.usefixtures("installed")
async def test_no_secret_reaches_a_log_line_an_exception_or_a_repr(
    sim: GitHubSim,
    make_client: MakeClient,
    transport: RecordingTransport,
    app_key: RSAKey,
    clock: FakeClock,
    fork_run: SimRun,
    caplog: pytest.LogCaptureFixture,
) -> None:
    sim.add_token(TOKEN)
    sim.add_web_session(SESSION)
    job = sim.add_job(fork_run, "claim")
    sim.start_step(job, "Claim", script="issuer token claim")
    app = GitHubApp(APP_ID, app_key, clock=clock)
    installation = InstallationCredential(app, INSTALLATION_ID, clock=clock)
    seen: list[str] = []
    caplog.set_level(logging.WARNING, logger="httpx")  # as issuer.web.logs configures it
    caplog.set_level(logging.DEBUG)
    github = make_client((BAD_TOKEN, TOKEN), credentials=[installation])
    base = f"/repos/{UPSTREAM}/actions/runs/{fork_run.id}"
    await github.get_json(base)  # 401 on BAD_TOKEN, then TOKEN
    await github.get_json(f"{base}/attempts/1")  # the installation: most budget left
    sim.fail_next(1, secondary=True, retry_after="")
    for path in (f"{base}/jobs", f"/repos/{UPSTREAM}/actions/runs/1"):
        try:
            await github.get_json(path)
        except GitHubError as exc:
            seen.append(f"{exc!s} {exc!r}")
    sim.finish_job(job)
    await github.download_log(UPSTREAM, job.id)
    for session in (SESSION, "refused_" + SESSION):
        live = LiveLogChannel(
            WEB,
            session,
            limiter=asyncio.Semaphore(1),
            find_codes=codes_in_lines,
            transport=transport,
        )
        await live.codes_in_running_job(UPSTREAM, fork_run.id, _job(job.id))
        seen.append(repr(live))
        await live.aclose()
    seen += [repr(github), repr(installation), repr(app), repr(TokenCredential(TOKEN))]
    [installation_token] = sim.installation_tokens(INSTALLATION_ID)
    assert "minted an installation token" in caplog.text and "rests" in caplog.text
    text = caplog.text + "\n".join(seen)
    key_body = app_key.as_pem(private=True).decode().splitlines()[1]
    for secret in (TOKEN, BAD_TOKEN, installation_token, SESSION, key_body, "eyJ", "sig="):
        assert secret not in text


def _job(job_id: int) -> JobFacts:
    return JobFacts.parse({"id": job_id, "status": "in_progress"})
