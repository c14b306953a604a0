"""``issuer trust add | list | remove | import``, run through the console script's entry point
against a builder service on a real socket."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
import yaml

from issuer.builder.relationships import parse_relationship
from issuer.cli import main
from tests.builder.conftest import RunningService
from tests.builder.support import ADMIN_TOKEN, FakeIssuer

EXAMPLE = Path(__file__).parents[2] / "examples" / "trust.yaml"


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture
def trust(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """Run ``issuer trust ARGS`` in this process (the black-box test runs it as a process),
    against ``service`` over its real socket."""

    def run(service: RunningService | None, *args: str, token: str = ADMIN_TOKEN) -> Result:
        for name in [name for name in os.environ if name.startswith("BUILDER_")]:
            monkeypatch.delenv(name)
        if service is not None:
            monkeypatch.setenv("BUILDER_URL", service.url)
        if token:
            monkeypatch.setenv("BUILDER_ADMIN_TOKEN", token)
        capsys.readouterr()
        try:
            code = main(["trust", *args])
        except SystemExit as exit:  # argparse's usage errors
            code = int(exit.code or 0)
        out, err = capsys.readouterr()
        return Result(code, out, err)

    return run


Trust = Callable[..., Result]


def test_add_list_and_remove_a_relationship(
    trust: Trust, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    added = trust(
        builder_service,
        "add",
        "--project",
        "octo-org/octo-repo",
        "--issuer",
        fake_issuer.url,
        "--repository",
        "octo-org/octo-repo",
        "--event",
        "pull_request",
        "--claim",
        "actor=octo-.*",
        "--ttl",
        "120",
        "--max-builders",
        "3",
    )
    assert added.returncode == 0, added.stderr
    relationship_id = added.stdout.split()[1]
    assert relationship_id.startswith("tr_")
    listed = trust(builder_service, "list", "--project", "octo-org/octo-repo")
    assert relationship_id in listed.stdout and "claim actor=octo-.*" in listed.stdout
    assert "max_builders 3" in listed.stdout and "ttl 120s" in listed.stdout
    removed = trust(builder_service, "remove", "--project", "octo-org/octo-repo", relationship_id)
    assert removed.returncode == 0, removed.stderr
    after = trust(builder_service, "list", "--project", "octo-org/octo-repo")
    assert "no trust relationships" in after.stdout


def test_a_refused_relationship_exits_1_with_the_reason(
    trust: Trust, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    result = trust(
        builder_service,
        "add",
        "--project",
        "p/q",
        "--issuer",
        fake_issuer.url,
        "--repository-pattern",
        "x|.*",
    )
    assert result.returncode == 1
    assert "constrains nothing" in result.stderr


def test_exact_repository_and_pattern_together_are_a_usage_error(
    trust: Trust, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    result = trust(
        builder_service,
        "add",
        "--project",
        "p/q",
        "--issuer",
        fake_issuer.url,
        "--repository",
        "a/b",
        "--repository-pattern",
        "a/.*",
    )
    assert result.returncode == 2
    assert "not allowed with argument" in result.stderr


def test_a_claim_without_a_pattern_is_a_usage_error(
    trust: Trust, builder_service: RunningService, fake_issuer: FakeIssuer
) -> None:
    result = trust(
        builder_service,
        "add",
        "--project",
        "p/q",
        "--issuer",
        fake_issuer.url,
        "--repository",
        "a/b",
        "--claim",
        "actor",
    )
    assert result.returncode == 2
    assert "NAME=PATTERN" in result.stderr


def test_import_adds_every_document_of_a_yaml_file(
    trust: Trust, builder_service: RunningService, fake_issuer: FakeIssuer, tmp_path: Path
) -> None:
    text = EXAMPLE.read_text().replace("https://issuer.example.com", fake_issuer.url)
    path = tmp_path / "trust.yaml"
    path.write_text(text)
    result = trust(builder_service, "import", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.count("added tr_") == 2
    shared = trust(builder_service, "list", "--project", "octo-org/shared", "--json")
    assert '"base_ref": "main"' in shared.stdout


def test_import_refuses_a_file_with_an_unknown_field_and_writes_nothing(
    trust: Trust, builder_service: RunningService, fake_issuer: FakeIssuer, tmp_path: Path
) -> None:
    path = tmp_path / "trust.yaml"
    path.write_text(
        f"project: p/q\nissuer: {fake_issuer.url}\nrepository: a/b\n---\n"
        f"project: p/q\nissuer: {fake_issuer.url}\nrepo: a/b\n"
    )
    result = trust(builder_service, "import", str(path))
    assert result.returncode == 1
    assert "document 2: unknown field 'repo'" in result.stderr
    assert "no trust relationships" in trust(builder_service, "list", "--project", "p/q").stdout


@pytest.mark.parametrize(
    ("content", "why"),
    [
        ("project: [unclosed\n", "not valid YAML at line"),
        ("- a\n- b\n", "is not a mapping"),
        ("", "no trust relationship in it"),
    ],
)
def test_import_refuses_a_file_that_is_not_relationships(
    trust: Trust, builder_service: RunningService, tmp_path: Path, content: str, why: str
) -> None:
    path = tmp_path / "trust.yaml"
    path.write_text(content)
    result = trust(builder_service, "import", str(path))
    assert result.returncode == 2
    assert why in result.stderr


def test_the_example_file_is_valid() -> None:
    documents = list(yaml.safe_load_all(EXAMPLE.read_text()))
    for document in documents:
        parse_relationship(document, trusted_issuers=("https://issuer.example.com",))
    assert len(documents) == 2


def test_without_an_admin_token_the_cli_says_which_variable_is_missing(
    trust: Trust,
    builder_service: RunningService,
) -> None:
    result = trust(builder_service, "list", "--project", "p/q", token="")
    assert result.returncode == 2
    assert "BUILDER_ADMIN_TOKEN" in result.stderr


def test_a_wrong_admin_token_is_refused_without_echoing_it(
    trust: Trust, builder_service: RunningService
) -> None:
    result = trust(builder_service, "list", "--project", "p/q", token="wrong-token-123456789")
    assert result.returncode == 1
    assert "wrong-token-123456789" not in result.stderr + result.stdout


def test_an_unreachable_service_exits_3(trust: Trust) -> None:
    env_service = type("S", (), {"url": "http://127.0.0.1:9"})()
    result = trust(env_service, "list", "--project", "p/q")  # type: ignore[arg-type]
    assert result.returncode == 3
    assert "cannot reach the builder service" in result.stderr
