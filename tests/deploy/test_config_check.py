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


def test_config_check_prints_every_setting_of_the_code_under_its_variable() -> None:
    result = config_check({"ISSUER_URL": "https://i.example"})
    assert result.returncode == 0, result.stderr
    printed = settings_printed(result.stdout)
    every = {f.name for f in fields(IssuerConfig)} | {f.name for f in fields(AbuseConfig)}
    assert len(printed) == len(every)
    assert all(name.startswith("ISSUER_") for name in printed)
    assert "ISSUER_CLAIM_RATE_WINDOW" in printed and "ISSUER_GITHUB_TOKEN" in printed


def test_config_check_shows_effective_values_and_marks_defaults() -> None:
    env = {
        "ISSUER_URL": "https://i.example/",
        "ISSUER_TOKEN_TTL": "120",
        "ISSUER_REPOSITORY_DENY": "evil/*",
    }
    printed = settings_printed(config_check(env).stdout)
    assert printed["ISSUER_URL"] == "https://i.example"
    assert printed["ISSUER_TOKEN_TTL"] == "120"
    assert printed["ISSUER_CLAIM_TTL"] == "600 (default)"
    assert printed["ISSUER_REPOSITORY_DENY"] == "evil/*"
    assert printed["ISSUER_METRICS_ADDRESS"] == "127.0.0.1:9101 (default)"


def test_config_check_says_what_applies_where_a_setting_is_unset() -> None:
    printed = settings_printed(config_check({"ISSUER_URL": "https://i.example"}).stdout)
    assert printed["ISSUER_REPOSITORY_ALLOW"] == "(unset: any repository)"
    assert printed["ISSUER_DEFAULT_AUDIENCE"] == "https://i.example (unset: ISSUER_URL applies)"
    assert "(none)" not in printed.values()


def test_config_check_shows_secrets_only_as_set_or_unset() -> None:
    result = config_check({"ISSUER_URL": "https://i.example", **SECRETS})
    assert result.returncode == 0, result.stderr
    printed = settings_printed(result.stdout)
    for name in ("ISSUER_GITHUB_TOKEN", "ISSUER_KEY_ENCRYPTION_KEY", "ISSUER_REDIS_URL"):
        assert printed[name] == "(set)"
    assert printed["ISSUER_ADMIN_TOKEN"].startswith("(set, but unused")
    for value in SECRETS.values():
        assert value not in result.stdout + result.stderr
    assert "hunter2" not in result.stdout


def test_config_check_shows_an_unset_secret_as_unset() -> None:
    printed = settings_printed(config_check({"ISSUER_URL": "https://i.example"}).stdout)
    assert printed["ISSUER_GITHUB_APP_PRIVATE_KEY_FILE"] == "(unset)"


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
