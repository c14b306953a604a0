"""Run ``issuer build`` as a subprocess, the way a runner runs the action's build step."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from tests.client.runner import Step, read_outputs


def build_env(output: Path, token: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GITHUB_", "ISSUER_"))}
    return {
        **env,
        "GITHUB_ACTIONS": "true",
        "GITHUB_OUTPUT": str(output),
        "ISSUER_OIDC_TOKEN": token,
        **extra,
    }


def start_build(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "issuer.cli", "build", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(process: subprocess.Popen[str], env: dict[str, str], timeout: float = 60) -> Step:
    stdout, stderr = process.communicate(timeout=timeout)
    outputs = read_outputs(Path(env["GITHUB_OUTPUT"])) if "GITHUB_OUTPUT" in env else {}
    return Step(process.returncode, stdout, stderr, outputs)


def run_build(*args: str, env: dict[str, str], timeout: float = 60) -> Step:
    return finish(start_build(*args, env=env), env, timeout)
