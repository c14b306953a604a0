"""``BUILDER_*`` settings: a missing or malformed one is named, a secret never echoed."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from issuer.builder.config import BuilderConfig
from issuer.oidc.config import ConfigError

BASE = {
    "BUILDER_URL": "https://builder.example.com/",
    "BUILDER_TRUSTED_ISSUERS": "https://issuer.example.com, https://other.example.com",
    "BUILDER_REDIS_URL": "redis://127.0.0.1:6379/1",
}


def config(**changes: str) -> BuilderConfig:
    env = {**BASE, **changes}
    return BuilderConfig.from_env({k: v for k, v in env.items() if v})


def problem(**changes: str) -> ConfigError:
    with pytest.raises(ConfigError) as caught:
        config(**changes)
    return caught.value


def test_the_audience_defaults_to_the_url() -> None:
    parsed = config()
    assert parsed.url == parsed.audience == "https://builder.example.com"
    assert parsed.trusted_issuers == ("https://issuer.example.com", "https://other.example.com")
    assert (parsed.backend, parsed.algorithms, parsed.leeway) == ("buildah", ("RS256", "ES256"), 60)


def test_an_audience_of_its_own_is_kept() -> None:
    assert config(BUILDER_AUDIENCE="https://builder.example").audience == "https://builder.example"


@pytest.mark.parametrize("name", ["BUILDER_URL", "BUILDER_TRUSTED_ISSUERS", "BUILDER_REDIS_URL"])
def test_a_required_setting_is_named_when_missing(name: str) -> None:
    assert problem(**{name: ""}).variable == name


@pytest.mark.parametrize("alg", ["none", "HS256", "HS512"])
def test_symmetric_and_none_algorithms_cannot_be_configured(alg: str) -> None:
    assert problem(BUILDER_ALGORITHMS=f"RS256,{alg}").variable == "BUILDER_ALGORITHMS"


def test_a_leeway_over_a_minute_is_refused() -> None:
    assert problem(BUILDER_LEEWAY="300").variable == "BUILDER_LEEWAY"


def test_an_unknown_backend_is_refused() -> None:
    assert problem(BUILDER_BACKEND="docker").variable == "BUILDER_BACKEND"


def test_a_trusted_issuer_that_is_not_a_url_is_refused() -> None:
    assert (
        problem(BUILDER_TRUSTED_ISSUERS="issuer.example.com").variable == "BUILDER_TRUSTED_ISSUERS"
    )


def test_a_short_admin_token_is_refused_without_echoing_it() -> None:
    error = problem(BUILDER_ADMIN_TOKEN="hunter2")
    assert error.variable == "BUILDER_ADMIN_TOKEN"
    assert "hunter2" not in str(error)


def test_serve_with_a_bad_setting_stops_with_one_line() -> None:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("BUILDER_")}
    result = subprocess.run(
        [sys.executable, "-m", "issuer.cli", "builder", "serve", "--port", "9"],
        env={**clean, **BASE, "BUILDER_ADMIN_TOKEN": "s3cr!t"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0
    assert "BUILDER_ADMIN_TOKEN" in result.stderr and "s3cr!t" not in result.stderr
    assert "Traceback" not in result.stderr


def test_the_maximum_token_lifetime_defaults_to_an_hour_and_is_read() -> None:
    assert config().max_token_lifetime == 3600
    assert config(BUILDER_MAX_TOKEN_LIFETIME="600").max_token_lifetime == 600


@pytest.mark.parametrize("value", ["0", "59", "86401", "1h"])
def test_a_maximum_token_lifetime_out_of_range_is_refused(value: str) -> None:
    assert problem(BUILDER_MAX_TOKEN_LIFETIME=value).variable == "BUILDER_MAX_TOKEN_LIFETIME"


def test_the_per_run_and_per_head_repository_limits_have_defaults_and_are_read() -> None:
    assert (config().max_builders_per_run, config().max_builders_per_head_repository) == (4, 8)
    parsed = config(BUILDER_MAX_BUILDERS_PER_RUN="1", BUILDER_MAX_BUILDERS_PER_HEAD_REPOSITORY="3")
    assert (parsed.max_builders_per_run, parsed.max_builders_per_head_repository) == (1, 3)


@pytest.mark.parametrize(
    "name", ["BUILDER_MAX_BUILDERS_PER_RUN", "BUILDER_MAX_BUILDERS_PER_HEAD_REPOSITORY"]
)
def test_a_per_run_limit_out_of_range_is_refused(name: str) -> None:
    assert problem(**{name: "0"}).variable == name


def test_metrics_listen_on_loopback_by_default() -> None:
    assert config().metrics_address == ("127.0.0.1", 9102)


def test_a_malformed_metrics_address_names_the_variable() -> None:
    assert problem(BUILDER_METRICS_ADDRESS="all:9102").variable == "BUILDER_METRICS_ADDRESS"
