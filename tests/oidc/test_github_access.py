"""Building the client and the live-log channel from the issuer's configuration."""

from __future__ import annotations

from pathlib import Path

import pytest
from joserfc.jwk import RSAKey

from issuer.oidc.config import IssuerConfig
from issuer.oidc.github_access import github_client_from_config, live_channel_from_config
from issuer.sim import GitHubSim, SimRun
from issuer.store import MemoryStore
from tests.github.conftest import APP_ID, INSTALLATION_ID
from tests.github.support import API, UPSTREAM, WEB, RecordingTransport


@pytest.fixture
def key_file(tmp_path: Path, app_key: RSAKey) -> Path:
    path = tmp_path / "app.pem"
    path.write_bytes(app_key.as_pem(private=True))
    return path


def config_of(**env: str) -> IssuerConfig:
    return IssuerConfig.from_env(
        {"ISSUER_URL": "https://issuer.example", "ISSUER_GITHUB_API_URL": API, **env}
    )


def app_env(key_file: Path) -> dict[str, str]:
    return {
        "ISSUER_GITHUB_APP_ID": str(APP_ID),
        "ISSUER_GITHUB_APP_PRIVATE_KEY_FILE": str(key_file),
        "ISSUER_GITHUB_APP_INSTALLATIONS": f"{INSTALLATION_ID},77",
    }


async def test_the_client_has_every_configured_token_and_installation(key_file: Path) -> None:
    config = config_of(ISSUER_GITHUB_TOKEN="ghp_one", **app_env(key_file))
    github = github_client_from_config(config, MemoryStore())
    try:
        names = github.credential_names
    finally:
        await github.aclose()
    assert names[0].startswith("token-")
    assert names[1:] == [f"app-{APP_ID}-inst-{INSTALLATION_ID}", f"app-{APP_ID}-inst-77"]


async def test_the_client_takes_the_configured_concurrency_cap() -> None:
    github = github_client_from_config(config_of(ISSUER_GITHUB_CONCURRENCY="5"), MemoryStore())
    await github.aclose()
    assert github.concurrency == 5


@pytest.mark.usefixtures("installed")
async def test_a_client_from_app_configuration_reads_a_run(
    sim: GitHubSim, transport: RecordingTransport, key_file: Path, fork_run: SimRun
) -> None:
    env = app_env(key_file) | {"ISSUER_GITHUB_APP_INSTALLATIONS": str(INSTALLATION_ID)}
    sim.settings.require_auth = True
    github = github_client_from_config(config_of(**env), MemoryStore(), transport=transport)
    try:
        page = await github.get_json(f"/repos/{UPSTREAM}/actions/runs/{fork_run.id}")
    finally:
        await github.aclose()
    assert page.body["id"] == fork_run.id


async def test_no_live_channel_without_a_web_session() -> None:
    config = config_of()
    github = github_client_from_config(config, MemoryStore())
    try:
        assert live_channel_from_config(config, github) is None
    finally:
        await github.aclose()


async def test_the_client_takes_the_configured_pace() -> None:
    config = config_of(ISSUER_GITHUB_POINTS_PER_MINUTE="300")
    github = github_client_from_config(config, MemoryStore())
    try:
        assert github.points_per_minute == 300
    finally:
        await github.aclose()


async def test_the_live_channel_shares_the_clients_concurrency_cap() -> None:
    config = config_of(ISSUER_GITHUB_WEB_SESSION="a-session", ISSUER_GITHUB_WEB_URL=WEB)
    github = github_client_from_config(config, MemoryStore())
    channel = live_channel_from_config(config, github)
    try:
        assert channel is not None
        assert channel._limiter is github.limiter
    finally:
        await github.aclose()
        if channel is not None:
            await channel.aclose()
