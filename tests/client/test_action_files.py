"""action.yml and examples/ against GitHub's published schemas, plus what schemas cannot see."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = sorted((ROOT / "examples").glob("*.yml"))
ACTION = "fork-oidc/fork-oidc-issuer@v1"  # the placeholder every example says to change


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


def test_the_action_declares_the_inputs_and_outputs_of_issues_6_and_14() -> None:
    action = yaml.safe_load((ROOT / "action.yml").read_text())
    assert set(action["inputs"]) == {
        "issuer-url",
        "audience",
        "mode",
        "claim",
        "relay-slot",
        "timeout",
        *("token", "builder-url", "project", "context", "file", "target", "build-args"),
        "output",
    }
    assert action["inputs"]["mode"]["default"] == "token"
    assert action["inputs"]["context"]["default"] == "."
    assert set(action["outputs"]) == {"token", "claim", "digest", "image-id", "pushed"}
    assert action["runs"]["using"] == "composite"


def test_the_action_passes_the_token_to_issuer_build_in_env_never_in_arguments() -> None:
    step = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"][-1]
    assert step["env"]["ISSUER_OIDC_TOKEN"] == "${{ inputs.token }}"
    assert "inputs.token" not in step["run"] and "--token" not in step["run"]


def test_the_action_passes_the_relay_slot_and_accepts_the_relay_mode() -> None:
    step = yaml.safe_load((ROOT / "action.yml").read_text())["runs"]["steps"][-1]
    assert step["env"]["ISSUER_RELAY_SLOT"] == "${{ inputs.relay-slot }}"
    assert "token | claim | exchange | relay) ;;" in step["run"]


def test_examples_need_only_the_issuer_url_and_audience_set() -> None:
    for path in EXAMPLES:
        workflow = yaml.safe_load(path.read_text())
        assert set(workflow["env"]) == {"ISSUER_URL", "AUDIENCE"}, path.name
        assert list(workflow[True]) == ["pull_request"], path.name  # YAML 1.1: `on` is True


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.name)
def test_each_example_says_in_one_comment_line_what_to_change(path: Path) -> None:
    lines = [line for line in path.read_text().splitlines() if line.startswith("# Change only")]
    assert len(lines) == 1
    assert all(word in lines[0] for word in ("ISSUER_URL", "AUDIENCE", ACTION))
    uses = set(re.findall(r"^\s+(?:- )?uses: (\S+)", path.read_text(), re.M))
    assert uses - {"actions/checkout@v4"} == {ACTION}


def _jobs(name: str) -> dict[str, Any]:
    jobs: dict[str, Any] = yaml.safe_load((ROOT / "examples" / name).read_text())["jobs"]
    return jobs


def test_the_two_job_example_runs_relay_and_build_in_parallel() -> None:
    jobs = _jobs("two-job.yml")
    assert set(jobs) == {"relay", "build"}
    assert "needs" not in jobs["relay"] and "needs" not in jobs["build"]


def test_the_two_job_relay_job_relays_the_slot_the_build_job_claims() -> None:
    jobs = _jobs("two-job.yml")
    relay = jobs["relay"]["steps"][0]["with"]
    build = jobs["build"]["steps"][0]["with"]
    assert relay["mode"] == "relay"
    assert build.get("mode", "token") == "token"
    assert relay["relay-slot"] == build["relay-slot"] == "build"
    assert "claim" not in build and "outputs" not in jobs["relay"]


def test_the_two_job_build_ends_with_an_image_built_from_the_checked_out_pull_request() -> None:
    steps = _jobs("two-job.yml")["build"]["steps"]
    uses = [step.get("uses", "") for step in steps]
    build = next(step for step in steps if step.get("with", {}).get("mode") == "build")
    assert uses.index("actions/checkout@v4") < steps.index(build)
    assert build["with"]["token"] == "${{ steps.oidc.outputs.token }}"
    assert build["with"]["builder-url"] == "${{ env.AUDIENCE }}"
    assert build["with"]["project"] == "${{ github.repository }}"
    assert "${{ steps.image.outputs.digest }}" in str(steps[-1]["env"])
    assert not any('echo "build here' in step.get("run", "") for step in steps)


def test_the_single_job_example_passes_the_claim_between_steps_of_one_job() -> None:
    steps = _jobs("single-job.yml")["test"]["steps"]
    assert steps[0]["with"]["mode"] == "claim"
    assert steps[1]["with"]["mode"] == "exchange"
    assert steps[1]["with"]["claim"] == "${{ steps.claim.outputs.claim }}"
