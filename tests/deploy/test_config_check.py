"""``issuer config check``: every effective setting, secrets only as set or unset."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
from dataclasses import fields

import pytest

from issuer.oidc.abuse import AbuseConfig
from issuer.oidc.config import IssuerConfig

SECRETS = {
    "ISSUER_GITHUB_TOKEN": "ghp_config_check_secret",
    "ISSUER_ADMIN_TOKEN": "admin-config-check-secret",
    "ISSUER_KEY_ENCRYPTION_KEY": base64.b64encode(b"c" * 32).decode(),
    "ISSUER_REDIS_URL": "redis://:hunter2-config@127.0.0.1:6379/0",
}


def config_check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    return subprocess.run(
        [sys.executable, "-m", "issuer.cli", "config", "check"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def settings_printed(output: str) -> dict[str, str]:
    return dict(line.split(" = ", 1) for line in output.splitlines())


def test_config_check_prints_every_setting_of_the_code() -> None:
    result = config_check({"ISSUER_URL": "https://i.example"})
    assert result.returncode == 0, result.stderr
    printed = settings_printed(result.stdout)
    every = {f.name for f in fields(IssuerConfig)} | {f.name for f in fields(AbuseConfig)}
    assert set(printed) == every


def test_config_check_shows_effective_values_and_defaults() -> None:
    env = {
        "ISSUER_URL": "https://i.example/",
        "ISSUER_TOKEN_TTL": "120",
        "ISSUER_REPOSITORY_DENY": "evil/*",
    }
    printed = settings_printed(config_check(env).stdout)
    assert printed["issuer_url"] == "https://i.example"
    assert printed["token_ttl"] == "120"
    assert printed["claim_ttl"] == "600"
    assert printed["repository_deny"] == "evil/*"
    assert printed["repository_allow"] == "(none)"


def test_config_check_shows_secrets_only_as_set_or_unset() -> None:
    result = config_check({"ISSUER_URL": "https://i.example", **SECRETS})
    assert result.returncode == 0, result.stderr
    printed = settings_printed(result.stdout)
    for name in ("github_tokens", "admin_token", "key_encryption_key", "redis_url"):
        assert printed[name] == "(set)"
    for value in SECRETS.values():
        assert value not in result.stdout + result.stderr
    assert "hunter2" not in result.stdout


def test_config_check_shows_an_unset_secret_as_unset() -> None:
    printed = settings_printed(config_check({"ISSUER_URL": "https://i.example"}).stdout)
    assert printed["admin_token"] == "(unset)"


@pytest.mark.parametrize(
    "variable, value",
    [
        ("ISSUER_TOKEN_TTL", "5m"),
        ("ISSUER_CLAIMS_PER_ADDRESS", "many"),
        ("ISSUER_TRUSTED_PROXIES", "proxy.local"),
    ],
)
def test_config_check_stops_with_one_line_naming_a_bad_setting(variable: str, value: str) -> None:
    result = config_check({"ISSUER_URL": "https://i.example", variable: value})
    assert result.returncode == 2
    assert result.stdout == ""
    (line,) = result.stderr.strip().splitlines()
    assert variable in line
    assert "Traceback" not in result.stderr


def test_config_check_never_echoes_a_malformed_secret() -> None:
    result = config_check(
        {"ISSUER_URL": "https://i.example", "ISSUER_KEY_ENCRYPTION_KEY": "s3cr!t-kek"}
    )
    assert result.returncode == 2
    assert "ISSUER_KEY_ENCRYPTION_KEY" in result.stderr
    assert "s3cr!t-kek" not in result.stderr
