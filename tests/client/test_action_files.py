"""action.yml and examples/ against GitHub's published schemas, plus what schemas cannot see."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yml"))


def _check(schema: str, *files: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "check_jsonschema", "--builtin-schema", schema, *map(str, files)],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )


def test_action_yml_matches_the_actions_schema() -> None:
    result = _check("vendor.github-actions", ROOT / "action.yml")
    assert result.returncode == 0, result.stdout + result.stderr


def test_examples_match_the_workflows_schema() -> None:
    assert {p.name for p in EXAMPLES} == {"two-job.yml", "single-job.yml"}
    result = _check("vendor.github-workflows", *EXAMPLES)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("path", [ROOT / "action.yml", *EXAMPLES], ids=lambda p: p.name)
def test_no_script_has_an_inline_expression(path: Path) -> None:
    """Inputs reach scripts through env: `${{ }}` inside `run:` invites script injection."""
    scripts = re.findall(r"run: \|\n((?:\s{8,}.*\n|\n)+)", path.read_text())
    assert scripts
    assert all("${{" not in script for script in scripts)


def test_the_action_declares_the_inputs_and_outputs_of_issue_6() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert set(action["inputs"]) == {"issuer-url", "audience", "mode", "claim", "timeout"}
    assert action["inputs"]["issuer-url"]["required"] is True
    assert action["inputs"]["mode"]["default"] == "token"
    assert set(action["outputs"]) == {"token", "claim"}
    assert action["runs"]["using"] == "composite"


def test_examples_need_only_the_issuer_url_and_audience_set() -> None:
    for path in EXAMPLES:
        workflow = yaml.safe_load(path.read_text())
        assert set(workflow["env"]) == {"ISSUER_URL", "AUDIENCE"}, path.name
        assert list(workflow[True]) == ["pull_request"], path.name  # YAML 1.1: `on` is True


def test_the_two_job_build_needs_the_claim_job_and_uses_its_output() -> None:
    jobs = yaml.safe_load((ROOT / "examples" / "two-job.yml").read_text())["jobs"]
    assert jobs["build"]["needs"] == "claim"
    exchange = jobs["build"]["steps"][0]["with"]
    assert exchange["mode"] == "exchange"
    assert exchange["claim"] == "${{ needs.claim.outputs.claim }}"
    assert "grant-type:token-exchange" in jobs["build"]["steps"][1]["run"]
