"""``issuer serve`` refuses a bad configuration with one line that names the setting."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.test_operator import seed_keyring


def serve_with(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    return subprocess.run(
        [sys.executable, "-m", "issuer.cli", "serve", "--port", "9"],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_serve_without_an_issuer_url_stops_with_one_line_naming_it() -> None:
    result = serve_with({})
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [result.stderr.strip()]
    assert "ISSUER_URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_serve_with_redis_but_no_key_encryption_key_stops_naming_it() -> None:
    result = serve_with({"ISSUER_URL": "https://i.example", "ISSUER_REDIS_URL": "redis://x"})
    assert result.returncode == 2
    assert "ISSUER_KEY_ENCRYPTION_KEY" in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1


def test_a_malformed_setting_is_named_without_echoing_secrets() -> None:
    result = serve_with({"ISSUER_URL": "https://i.example", "ISSUER_KEY_ENCRYPTION_KEY": "s3cr!t"})
    assert result.returncode == 2
    assert "ISSUER_KEY_ENCRYPTION_KEY" in result.stderr
    assert "s3cr!t" not in result.stderr


def keys_command(redis_url: str, kek: str, *args: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ISSUER_")}
    env = {
        **clean,
        "ISSUER_URL": "https://i.example",
        "ISSUER_REDIS_URL": redis_url,
        "ISSUER_KEY_ENCRYPTION_KEY": kek,
    }
    return subprocess.run(
        [sys.executable, "-m", "issuer.cli", "keys", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )


def test_keys_rotate_publishes_a_next_key_and_retire_removes_it(redis_url: str) -> None:
    import base64

    kek = base64.b64encode(os.urandom(32)).decode()
    seed_keyring(redis_url, kek)
    listed = keys_command(redis_url, kek, "list")
    assert listed.returncode == 0, listed.stderr
    assert "active" in listed.stdout
    rotated = keys_command(redis_url, kek, "rotate")
    assert rotated.returncode == 0, rotated.stderr
    after = keys_command(redis_url, kek, "list").stdout
    assert "next" in after and "active" in after
    next_kid = next(line.split()[0] for line in after.splitlines() if " next " in f" {line} ")
    retired = keys_command(redis_url, kek, "retire", next_kid)
    assert retired.returncode == 0, retired.stderr
    assert next_kid not in keys_command(redis_url, kek, "list").stdout
    for output in (listed, rotated, retired):
        assert "PRIVATE KEY" not in output.stdout + output.stderr


def test_keys_retire_of_an_unknown_kid_fails_naming_it(redis_url: str) -> None:
    import base64

    kek = base64.b64encode(os.urandom(32)).decode()
    seed_keyring(redis_url, kek)
    result = keys_command(redis_url, kek, "retire", "no-such-kid")
    assert result.returncode != 0
    assert "no-such-kid" in result.stdout + result.stderr
    assert "Traceback" not in result.stderr
