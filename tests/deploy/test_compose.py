"""docker-compose.yml, read as compose reads it: what must hold without a Docker engine."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
SECRET_NAME = re.compile(r"TOKEN|KEY|SECRET|PASSWORD|PRIVATE|CREDENTIAL|SESSION", re.IGNORECASE)
USERINFO = re.compile(r"://[^/@\s]*:[^/@\s]*@")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    return loaded


def service(name: str) -> dict[str, Any]:
    found: dict[str, Any] = compose()["services"][name]
    return found


def environment_of(name: str) -> dict[str, str]:
    env = service(name).get("environment", {})
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {key: "" if value is None else str(value) for key, value in env.items()}


def env_file_names(path: Path) -> list[str]:
    """The variable names an env file sets, or shows commented out."""
    names = []
    for line in path.read_text().splitlines():
        match = re.match(r"^#?\s*([A-Z][A-Z0-9_]*)=", line.strip())
        if match:
            names.append(match.group(1))
    return names


def source_text(under: str) -> str:
    return "\n".join(path.read_text() for path in (ROOT / under).rglob("*.py"))


def literals_in_source(prefix: str, under: str) -> set[str]:
    """Every quoted ``PREFIX...`` string in the package: the settings the code reads."""
    return set(re.findall(rf"\"({prefix}[A-Z0-9_]+)\"", source_text(under)))


def names_used_by_compose(prefix: str) -> set[str]:
    names: set[str] = set()
    for name in compose()["services"]:
        names.update(key for key in environment_of(name) if key.startswith(prefix))
        for env_file in service(name).get("env_file", []):
            example = ROOT / f"{env_file}.example"
            names.update(n for n in env_file_names(example) if n.startswith(prefix))
    return names


def test_the_stack_is_redis_the_issuer_and_the_builder_with_the_simulator_for_demos() -> None:
    services = compose()["services"]
    assert set(services) == {"redis", "issuer", "builder", "github-sim"}
    assert services["github-sim"]["profiles"] == ["demo"]
    assert all("profiles" not in services[name] for name in ("redis", "issuer", "builder"))


@pytest.mark.parametrize(
    "name, command",
    [
        ("issuer", ["serve"]),
        ("builder", ["builder", "serve"]),
        ("github-sim", ["github-sim"]),
    ],
)
def test_each_service_runs_its_issuer_command(name: str, command: list[str]) -> None:
    assert service(name)["command"][: len(command)] == command


def test_the_demo_simulator_listens_where_the_issuer_can_reach_it() -> None:
    simulator = service("github-sim")
    assert simulator["command"][:3] == ["github-sim", "--host", "0.0.0.0"]  # noqa: S104
    assert simulator["networks"] == ["backend"] and "network_mode" not in simulator
    assert "ISSUER_GITHUB_API_URL=http://github-sim:8001" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("name", ["redis", "issuer", "builder", "github-sim"])
def test_every_service_has_a_health_check(name: str) -> None:
    healthcheck = service(name)["healthcheck"]
    assert healthcheck["test"][0] in ("CMD", "CMD-SHELL")
    assert len(healthcheck["test"]) > 1


@pytest.mark.parametrize("name, port", [("issuer", 8000), ("builder", 8081)])
def test_the_services_health_checks_ask_their_readiness_endpoint(name: str, port: int) -> None:
    assert f"127.0.0.1:{port}/readyz" in " ".join(service(name)["healthcheck"]["test"])


def test_redis_persists_to_a_volume_with_the_append_only_file() -> None:
    redis = service("redis")
    command = " ".join(redis["command"])
    assert "--appendonly yes" in command
    (volume,) = redis["volumes"]
    name, target = volume.split(":")[:2]
    assert target == "/data" and name in compose()["volumes"]


def test_the_services_wait_for_a_healthy_redis() -> None:
    for name in ("issuer", "builder"):
        assert service(name)["depends_on"]["redis"]["condition"] == "service_healthy"


def test_the_issuer_is_given_longer_than_a_long_poll_to_stop() -> None:
    grace = service("issuer")["stop_grace_period"]
    assert grace.endswith("s") and int(grace[:-1]) > 30


def test_every_issuer_setting_named_exists_in_the_code() -> None:
    used = names_used_by_compose("ISSUER_")
    assert used >= {"ISSUER_URL", "ISSUER_REDIS_URL", "ISSUER_KEY_ENCRYPTION_KEY"}
    assert used - literals_in_source("ISSUER_", "issuer") == set()


def test_every_builder_setting_named_exists_in_the_code() -> None:
    used = names_used_by_compose("BUILDER_")
    assert used >= {"BUILDER_URL", "BUILDER_TRUSTED_ISSUERS", "BUILDER_REDIS_URL"}
    assert used - literals_in_source("BUILDER_", "issuer/builder") == set()


@pytest.mark.parametrize("name", ["redis", "issuer", "builder", "github-sim"])
def test_no_secret_is_written_inline(name: str) -> None:
    for key, value in environment_of(name).items():
        if SECRET_NAME.search(key) and not key.endswith("_FILE"):
            pytest.fail(f"{name}: {key} is set inline; it belongs in an env file or a secret")
        assert not USERINFO.search(value), f"{name}: {key} holds credentials"


def redis_users() -> list[str]:
    """The users deploy/redis/users.conf defines, ``default`` aside."""
    lines = (ROOT / "deploy" / "redis" / "users.conf").read_text().splitlines()
    names = [line.split()[1] for line in lines if line.startswith("user ")]
    return [name for name in names if name != "default"]


def test_redis_has_one_user_per_service() -> None:
    assert redis_users() == ["issuer", "builder"]


def test_redis_starts_from_the_shipped_acl_users_with_passwords_added_by_the_script() -> None:
    redis = service("redis")
    mounted = {config["source"]: config["target"] for config in redis["configs"]}
    shipped = {name: config["file"] for name, config in compose()["configs"].items()}
    assert shipped["redis_users"] == "deploy/redis/users.conf"
    assert shipped["redis_users_script"] == "deploy/redis/users.sh"
    rules, script = mounted["redis_users"], mounted["redis_users_script"]
    command = " ".join(redis["command"])
    assert f"sh {script} {rules} /run/secrets > /tmp/users.conf &&" in command
    assert "redis-server /tmp/users.conf " in command
    assert "requirepass" not in command  # the default user stays off


def test_each_redis_user_has_a_password_secret_of_its_own() -> None:
    expected = [f"redis_{user}_password" for user in redis_users()]
    assert service("redis")["secrets"] == expected
    for name in expected:
        assert compose()["secrets"][name]["file"] == f"deploy/secrets/{name}"


def test_the_redis_health_check_logs_in_as_a_service_user() -> None:
    check = " ".join(service("redis")["healthcheck"]["test"])
    assert "--user issuer" in check and "/run/secrets/redis_issuer_password" in check


@pytest.mark.parametrize(
    "example, user", [("issuer.env.example", "issuer"), ("builder.env.example", "builder")]
)
def test_each_env_example_connects_to_redis_as_its_own_user(example: str, user: str) -> None:
    text = (ROOT / "deploy" / example).read_text()
    assert re.findall(r"redis://(\w+):PASSWORD@", text) == [user]
    assert f"redis_{user}_password" in text


def test_secrets_come_from_env_files_that_are_never_committed() -> None:
    ignored = (ROOT / "deploy" / ".gitignore").read_text().splitlines()
    assert "*.env" in ignored and "secrets/*" in ignored
    for name in ("issuer", "builder"):
        for env_file in service(name)["env_file"]:
            assert env_file.endswith(".env")
            assert (ROOT / f"{env_file}.example").is_file()
    for secret in compose()["secrets"].values():
        assert secret["file"].startswith("deploy/secrets/")


@pytest.mark.parametrize("example", ["issuer.env.example", "builder.env.example"])
def test_the_example_env_files_hold_names_only(example: str) -> None:
    for line in (ROOT / "deploy" / example).read_text().splitlines():
        match = re.match(r"^([A-Z][A-Z0-9_]*)=(.*)$", line)
        if match and SECRET_NAME.search(match.group(1)):
            assert match.group(2) == "", f"{example}: {match.group(1)} has a value"
        if match and match.group(1).endswith("REDIS_URL"):
            assert match.group(2) == "", f"{example}: {match.group(1)} has a value"


def test_the_builder_runs_the_images_builder_stage() -> None:
    assert service("builder")["build"]["target"] == "builder"


def test_the_builder_adds_only_the_capabilities_its_sandbox_needs() -> None:
    builder = service("builder")
    assert builder["cap_drop"] == ["ALL"]
    assert set(builder["cap_add"]) == {
        "SETUID",
        "SETGID",
        "CHOWN",
        "DAC_OVERRIDE",
        "FOWNER",
    }
    assert builder.get("privileged") is not True


def test_the_builders_scratch_root_is_a_tmpfs_others_may_only_pass_through() -> None:
    scratch = environment_of("builder")["BUILDER_SCRATCH_ROOT"]
    mounts = [entry for entry in service("builder")["tmpfs"] if entry.startswith(scratch + ":")]
    assert mounts and "mode=0711" in mounts[0]


def test_only_the_builder_gives_up_the_default_confinement() -> None:
    for name, settings in compose()["services"].items():
        if name in ("builder", "redis"):
            continue
        assert settings.get("cap_drop") == ["ALL"], name
        assert "no-new-privileges:true" in settings.get("security_opt", []), name
