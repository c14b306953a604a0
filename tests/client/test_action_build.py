"""The action's `mode: build` script, run by bash as the runner runs it (inputs in env), with
the real client installed where the action's first step installs it, against the real
builder service and the stand-in builder endpoints (tests/client/standin.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

from tests.builder.conftest import RunningService
from tests.builder.support import PROJECT, FakeIssuer
from tests.client.build_runner import build_env
from tests.client.runner import read_outputs
from tests.client.standin import DIGEST, StandInBuilders

ROOT = Path(__file__).resolve().parents[2]


def run_action_step(runner_temp: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    step = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"][-1]
    client = runner_temp / "fork-oidc-client" / "bin"
    client.mkdir(parents=True)
    (client / "issuer").symlink_to(Path(sys.executable).parent / "issuer")
    return subprocess.run(
        ["bash", "--noprofile", "--norc", "-eo", "pipefail", "-c", step["run"]],
        env={**env, "RUNNER_TEMP": str(runner_temp)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def inputs(**given: str) -> dict[str, str]:
    """The step's env as the runner sets it from the action's inputs (defaults included)."""
    defaults = {"mode": "token", "timeout": "300", "context": "."}
    values = {**defaults, **given}
    names = {
        "ISSUER_URL": "issuer-url",
        "ISSUER_AUDIENCE": "audience",
        "ISSUER_CLAIM": "claim",
        "ISSUER_RELAY_SLOT": "relay-slot",
        "FORK_OIDC_MODE": "mode",
        "FORK_OIDC_TIMEOUT": "timeout",
        "ISSUER_OIDC_TOKEN": "token",
        "ISSUER_BUILDER_URL": "builder-url",
        "ISSUER_PROJECT": "project",
        "FORK_OIDC_CONTEXT": "context",
        "FORK_OIDC_FILE": "file",
        "FORK_OIDC_TARGET": "target",
        "FORK_OIDC_BUILD_ARGS": "build-args",
        "FORK_OIDC_OUTPUT": "output",
    }
    return {variable: values.get(name, "") for variable, name in names.items()}


def test_mode_build_builds_with_each_input_and_sets_the_outputs(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    (context_dir / "Dockerfile.ci").write_text("FROM scratch AS test\n")
    env = build_env(tmp_path / "github_output", "")
    env.update(
        inputs(
            mode="build",
            token=oidc_issuer.token(),
            **{"builder-url": builder_service.url, "build-args": "A=1\n\nB=two words\n"},
            project=PROJECT,
            context=str(context_dir),
            file=str(context_dir / "Dockerfile.ci"),
            target="test",
            output=str(tmp_path / "image.tar"),
        )
    )
    result = run_action_step(tmp_path / "runner_temp", env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert read_outputs(tmp_path / "github_output")["digest"] == DIGEST
    assert standins.builds()[0].query == {
        "dockerfile": "Dockerfile.ci",
        "target": "test",
        "buildargs": '{"A":"1","B":"two words"}',
    }
    assert (tmp_path / "image.tar").exists()


def test_mode_build_without_optional_inputs_builds_the_contexts_dockerfile(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    env = build_env(tmp_path / "github_output", "")
    env.update(
        inputs(
            mode="build",
            token=oidc_issuer.token(),
            **{"builder-url": builder_service.url},
            project=PROJECT,
            context=str(context_dir),
        )
    )
    result = run_action_step(tmp_path / "runner_temp", env)
    assert result.returncode == 0, result.stdout + result.stderr
    assert standins.builds()[0].query == {"dockerfile": "Dockerfile"}


def test_an_unknown_mode_names_build_among_the_modes(tmp_path: Path) -> None:
    result = run_action_step(
        tmp_path / "runner_temp", {"PATH": "/usr/bin:/bin", **inputs(mode="x")}
    )
    assert result.returncode == 2
    assert "token, relay, claim, exchange or build" in result.stdout
