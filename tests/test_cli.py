"""``issuer serve`` refuses a bad configuration with one line that names the setting."""

from __future__ import annotations

import os
import subprocess
import sys


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
