import base64

import pytest

from issuer.config import ConfigError, IssuerConfig

KEK = base64.b64encode(b"k" * 32).decode()


def config_of(**env: str) -> IssuerConfig:
    return IssuerConfig.from_env({"ISSUER_URL": "https://issuer.example", **env})


def test_only_the_issuer_url_is_required() -> None:
    config = config_of()
    assert config.issuer_url == "https://issuer.example"
    assert (config.token_ttl, config.claim_ttl) == (300, 600)
    assert config.github_api_url == "https://api.github.com"
    assert config.audience_when_unnamed == "https://issuer.example"


def test_a_missing_issuer_url_names_the_variable() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_URL: is required"):
        IssuerConfig.from_env({})


def test_an_issuer_url_that_is_not_absolute_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_URL: must be an absolute"):
        IssuerConfig.from_env({"ISSUER_URL": "issuer.example"})


def test_a_trailing_slash_is_dropped_from_the_issuer_url() -> None:
    assert IssuerConfig.from_env({"ISSUER_URL": "https://i.example/"}).issuer_url == (
        "https://i.example"
    )


def test_redis_without_a_key_encryption_key_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_KEY_ENCRYPTION_KEY: required"):
        config_of(ISSUER_REDIS_URL="redis://127.0.0.1:6379/0")


def test_a_key_encryption_key_must_be_32_bytes() -> None:
    with pytest.raises(ConfigError, match="must decode to 32 bytes, not 5"):
        config_of(ISSUER_KEY_ENCRYPTION_KEY=base64.b64encode(b"short").decode())


def test_a_key_encryption_key_must_be_base64() -> None:
    with pytest.raises(ConfigError, match="is not valid base64"):
        config_of(ISSUER_KEY_ENCRYPTION_KEY="not base64 at all!")


def test_a_ttl_must_be_a_whole_number_in_range() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_TOKEN_TTL: must be a whole number"):
        config_of(ISSUER_TOKEN_TTL="5m")
    with pytest.raises(ConfigError, match=r"^ISSUER_CLAIM_TTL: must be between"):
        config_of(ISSUER_CLAIM_TTL="1")


def test_several_github_tokens_are_comma_separated() -> None:
    assert config_of(ISSUER_GITHUB_TOKEN="a, b,,c").github_tokens == ("a", "b", "c")


def test_a_default_audience_outside_the_allowed_ones_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_DEFAULT_AUDIENCE"):
        config_of(ISSUER_ALLOWED_AUDIENCES="https://a", ISSUER_DEFAULT_AUDIENCE="https://b")


def test_the_configuration_repr_shows_no_secret() -> None:
    config = config_of(
        ISSUER_GITHUB_TOKEN="ghp_secret_value",
        ISSUER_ADMIN_TOKEN="admin-secret",
        ISSUER_KEY_ENCRYPTION_KEY=KEK,
        ISSUER_REDIS_URL="redis://:hunter2@127.0.0.1/0",
    )
    text = repr(config)
    for secret in ("ghp_secret_value", "admin-secret", "hunter2", "kkkk"):
        assert secret not in text
