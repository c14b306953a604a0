import base64
from pathlib import Path

import pytest

from issuer.oidc.config import ConfigError, IssuerConfig

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


# -- GitHub App credentials, budget and the web-UI session ---------------------------------


@pytest.fixture(scope="module")
def rsa_pem() -> str:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,  # "BEGIN RSA PRIVATE KEY", as GitHub
        serialization.NoEncryption(),
    ).decode()


@pytest.fixture
def key_file(tmp_path: Path, rsa_pem: str) -> Path:
    path = tmp_path / "app.pem"
    path.write_text(rsa_pem)
    return path


def app_env(key_file: Path, **overrides: str) -> dict[str, str]:
    env = {
        "ISSUER_GITHUB_APP_ID": "12345",
        "ISSUER_GITHUB_APP_PRIVATE_KEY_FILE": str(key_file),
        "ISSUER_GITHUB_APP_INSTALLATIONS": "111, 222",
    }
    env.update(overrides)
    return env


def test_a_github_app_is_read_with_its_key_and_installations(key_file: Path, rsa_pem: str) -> None:
    config = config_of(**app_env(key_file))
    assert config.github_app_id == 12345
    assert config.github_app_installations == (111, 222)
    assert config.github_app_private_key == rsa_pem


@pytest.mark.parametrize(
    "missing",
    [
        "ISSUER_GITHUB_APP_ID",
        "ISSUER_GITHUB_APP_PRIVATE_KEY_FILE",
        "ISSUER_GITHUB_APP_INSTALLATIONS",
    ],
)
def test_a_github_app_needs_all_three_settings(key_file: Path, missing: str) -> None:
    env = app_env(key_file)
    del env[missing]
    with pytest.raises(ConfigError, match=rf"^{missing}: is required with"):
        config_of(**env)


def test_an_app_id_must_be_a_number(key_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_APP_ID: must be"):
        config_of(**app_env(key_file, ISSUER_GITHUB_APP_ID="my-app"))


def test_installations_must_be_numbers(key_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_APP_INSTALLATIONS: must be"):
        config_of(**app_env(key_file, ISSUER_GITHUB_APP_INSTALLATIONS="111,abc"))


def test_an_installation_listed_twice_is_refused(key_file: Path) -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_APP_INSTALLATIONS: lists 111 twice"):
        config_of(**app_env(key_file, ISSUER_GITHUB_APP_INSTALLATIONS="111,111"))


def test_a_missing_key_file_is_refused(key_file: Path, tmp_path: Path) -> None:
    absent = str(tmp_path / "nope.pem")
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_APP_PRIVATE_KEY_FILE: .* does not"):
        config_of(**app_env(key_file, ISSUER_GITHUB_APP_PRIVATE_KEY_FILE=absent))


def test_a_key_file_without_a_private_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "cert.pem"
    path.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_APP_PRIVATE_KEY_FILE: .* not an"):
        config_of(**app_env(path))


def test_a_key_file_with_an_ec_key_is_refused(tmp_path: Path) -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    path = tmp_path / "ec.pem"
    path.write_bytes(
        ec.generate_private_key(ec.SECP256R1()).private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_APP_PRIVATE_KEY_FILE: .* not an RSA"):
        config_of(**app_env(path))


def test_the_github_budget_settings_have_defaults() -> None:
    config = config_of()
    assert (config.github_reserve, config.github_concurrency) == (100, 16)


def test_the_reserve_and_concurrency_are_read_and_bounded() -> None:
    config = config_of(ISSUER_GITHUB_RESERVE="0", ISSUER_GITHUB_CONCURRENCY="4")
    assert (config.github_reserve, config.github_concurrency) == (0, 4)
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_CONCURRENCY: must be"):
        config_of(ISSUER_GITHUB_CONCURRENCY="0")
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_RESERVE: must be"):
        config_of(ISSUER_GITHUB_RESERVE="-1")


def test_the_pace_under_githubs_secondary_limit_is_read_and_bounded() -> None:
    assert config_of().github_points_per_minute == 720
    assert config_of(ISSUER_GITHUB_POINTS_PER_MINUTE="300").github_points_per_minute == 300
    for bad in ("0", "59", "fast", "720.5"):
        with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_POINTS_PER_MINUTE: must be"):
            config_of(ISSUER_GITHUB_POINTS_PER_MINUTE=bad)


def test_the_web_origin_follows_the_api(key_file: Path) -> None:
    assert config_of().github_web_origin == "https://github.com"
    enterprise = config_of(ISSUER_GITHUB_API_URL="https://ghe.example/api/v3")
    assert enterprise.github_web_origin == "https://ghe.example"
    chosen = config_of(ISSUER_GITHUB_WEB_URL="https://web.example")
    assert chosen.github_web_origin == "https://web.example"


def test_a_web_url_with_a_path_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_WEB_URL: must be an origin"):
        config_of(ISSUER_GITHUB_WEB_URL="https://github.com/login")


def test_a_web_session_that_is_no_cookie_value_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_WEB_SESSION") as refused:
        config_of(ISSUER_GITHUB_WEB_SESSION="abc; secret=1")
    assert "secret=1" not in str(refused.value)


def test_the_configuration_repr_shows_no_app_key_or_web_session(
    key_file: Path, rsa_pem: str
) -> None:
    config = config_of(**app_env(key_file), ISSUER_GITHUB_WEB_SESSION="session-value-xyz")
    text = repr(config)
    assert "session-value-xyz" not in text
    assert rsa_pem.splitlines()[1] not in text and "PRIVATE KEY" not in text


def test_metrics_listen_on_loopback_by_default() -> None:
    assert config_of().metrics_address == ("127.0.0.1", 9101)


@pytest.mark.parametrize(
    ("raw", "address"),
    [("10.0.0.5:9200", ("10.0.0.5", 9200)), ("[::1]:9101", ("::1", 9101))],
)
def test_the_metrics_address_is_host_and_port(raw: str, address: tuple[str, int]) -> None:
    assert config_of(ISSUER_METRICS_ADDRESS=raw).metrics_address == address


@pytest.mark.parametrize("raw", ["9101", "localhost:9101", "127.0.0.1:0", "127.0.0.1:http"])
def test_a_malformed_metrics_address_names_the_variable(raw: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config_of(ISSUER_METRICS_ADDRESS=raw)
    assert caught.value.variable == "ISSUER_METRICS_ADDRESS"


def test_a_webhook_secret_turns_deliveries_on() -> None:
    config = config_of(ISSUER_GITHUB_WEBHOOK_SECRET="w" * 32)
    assert config.github_webhook_secret == b"w" * 32
    assert "w" * 32 not in repr(config)


def test_a_short_webhook_secret_is_refused() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_WEBHOOK_SECRET: must be"):
        config_of(ISSUER_GITHUB_WEBHOOK_SECRET="hunter2")


def test_points_per_address_must_be_a_whole_number() -> None:
    with pytest.raises(ConfigError, match=r"^ISSUER_GITHUB_POINTS_PER_ADDRESS"):
        config_of(ISSUER_GITHUB_POINTS_PER_ADDRESS="lots")
