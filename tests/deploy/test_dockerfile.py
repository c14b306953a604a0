"""The Dockerfile, read line by line: slim, non-root, a health check, `issuer` as entry."""

from __future__ import annotations

import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments), continuation lines joined, comments dropped."""
    joined: list[str] = []
    pending = ""
    for raw in (ROOT / "Dockerfile").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.endswith("\\"):
            pending += line[:-1] + " "
            continue
        joined.append(pending + line)
        pending = ""
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in joined]


def final_stage() -> list[tuple[str, str]]:
    steps = instructions()
    last_from = max(i for i, (name, _) in enumerate(steps) if name == "FROM")
    return steps[last_from:]


def test_the_image_is_built_on_a_slim_python_311() -> None:
    bases = [args.split()[0] for name, args in instructions() if name == "FROM"]
    assert bases and all(base == "python:3.11-slim" for base in bases)


def test_the_image_runs_as_a_non_root_user() -> None:
    users = [args for name, args in final_stage() if name == "USER"]
    assert users, "no USER in the final stage"
    user = users[-1].split(":")[0]
    assert user not in ("root", "0")


def test_the_image_has_a_health_check_on_readiness() -> None:
    (check,) = [args for name, args in final_stage() if name == "HEALTHCHECK"]
    assert "CMD" in check and "/readyz" in check


def test_the_image_runs_the_issuer_command() -> None:
    steps = dict(final_stage())
    assert json.loads(steps["ENTRYPOINT"]) == ["issuer"]
    assert json.loads(steps["CMD"])[:1] == ["serve"]


def test_the_build_context_holds_only_the_package() -> None:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    assert "*" in lines and "!issuer/" in lines
    assert not any(line.startswith("!") and "env" in line for line in lines)


def stage(name: str) -> list[tuple[str, str]]:
    steps = instructions()
    start = next(
        i for i, (kind, args) in enumerate(steps) if kind == "FROM" and args.endswith(f" AS {name}")
    )
    end = next((i for i in range(start + 1, len(steps)) if steps[i][0] == "FROM"), len(steps))
    return steps[start:end]


def test_the_builder_stage_installs_buildah_bubblewrap_and_uidmap_and_subordinate_ids() -> None:
    runs = " ".join(args for kind, args in stage("builder") if kind == "RUN")
    assert all(package in runs for package in ("buildah", "bubblewrap", "uidmap"))
    assert "--add-subuids" in runs and "--add-subgids" in runs


def test_the_builder_stage_serves_the_builder_service() -> None:
    steps = dict(stage("builder"))
    assert json.loads(steps["CMD"])[:2] == ["builder", "serve"]
