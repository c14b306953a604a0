"""``issuer build`` as a runner runs it, against a real builder service (exchange, trust,
limits, build tokens, introspection) whose builders' endpoints are the stand-in of
tests/client/standin.py: it answers exactly API.md's build stream and stands for the real
builder until the end-to-end test with it exists."""

from __future__ import annotations

import gzip
import io
import os
import signal
import socket
import tarfile
from pathlib import Path
from typing import Any

import httpx
import pytest

from issuer.builder.adminclient import AdminClient
from tests.builder.conftest import RunningService
from tests.builder.support import PROJECT, FakeIssuer
from tests.client.build_runner import build_env, finish, run_build, start_build
from tests.client.runner import Step
from tests.client.standin import (
    DIGEST,
    IMAGE_ID,
    StandInBuilders,
    failure,
    oci_archive,
    stream,
    success,
)

PUSHED = f"registry.example/octo/app:pr-7-0123456789ab@{DIGEST}"


def args(service: RunningService, context: Path, *more: str) -> list[str]:
    return ["--builder", service.url, "--project", PROJECT, "--context", str(context), *more]


def the_build(
    service: RunningService,
    issuer: FakeIssuer,
    context: Path,
    tmp_path: Path,
    *more: str,
    token: str | None = None,
) -> Step:
    env = build_env(tmp_path / "github_output", token or issuer.token())
    return run_build(*args(service, context, *more), env=env)


def exit_message(step: Step) -> str:
    errors = [line for line in step.stdout.splitlines() if line.startswith("::error")]
    assert len(errors) == 1, step.text
    return errors[0]


def test_a_build_prints_its_output_with_step_and_time_and_sets_the_outputs(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    standins.script = [
        stream("STEP 1/2: FROM scratch\n"),
        stream("STEP 2/2: COPY app /app\n"),
        stream("copied 9 bytes\n"),
        success(PUSHED),
    ]
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    assert step.returncode == 0, step.text
    lines = step.stdout.splitlines()
    assert any(line.endswith("s  STEP 2/2: COPY app /app") for line in lines)
    assert any(line.endswith("s  STEP 2/2 | copied 9 bytes") for line in lines)
    assert step.outputs == {"digest": DIGEST, "image-id": IMAGE_ID, "pushed": PUSHED}


def test_the_builder_is_stopped_after_a_build_and_the_step_says_so(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    assert step.returncode == 0, step.text
    (delete,) = standins.deletes()
    assert delete.authorized
    assert f"builder {delete.path.rsplit('/', 1)[-1]} stopped" in step.stdout
    assert "(ephemeral, no cache; it stops by itself at" in step.stdout


def test_a_build_that_pushed_nothing_sets_pushed_empty(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    assert step.outputs["pushed"] == "" and step.outputs["digest"] == DIGEST
    assert "not pushed" in step.stdout


def test_the_output_is_printed_while_the_build_still_runs(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    """The stand-in holds its stream after the first output line until the test has read
    that line from the client; a client that printed only at the end never shows it then
    (and the stand-in, never released, ends the build with an error)."""
    gate = standins.gate()
    standins.script = [stream("STEP 1/2: RUN make\n"), stream("first\n"), gate, success()]
    env = build_env(tmp_path / "o", oidc_issuer.token())
    process = start_build(*args(builder_service, context_dir), env=env)
    assert process.stdout is not None
    for line in process.stdout:
        if line.rstrip().endswith("STEP 1/2 | first"):
            break
    gate.open()
    step = finish(process, env)
    assert step.returncode == 0, step.text


def test_the_context_and_the_build_parameters_reach_the_builder(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    (context_dir / ".dockerignore").write_text("*.tmp\n")
    (context_dir / "scratch.tmp").write_text("not for the builder")
    (context_dir / "ci").mkdir()
    (context_dir / "ci" / "Dockerfile").write_text("FROM scratch AS runtime\n")
    step = the_build(
        builder_service,
        oidc_issuer,
        context_dir,
        tmp_path,
        "--file",
        str(context_dir / "ci" / "Dockerfile"),
        "--target",
        "runtime",
        "--build-arg",
        "VERSION=1.2.3",
        "--build-arg",
        "EMPTY=",
    )
    assert step.returncode == 0, step.text
    (build,) = standins.builds()
    assert build.authorized
    assert build.query == {
        "dockerfile": "ci/Dockerfile",
        "target": "runtime",
        "buildargs": '{"VERSION":"1.2.3","EMPTY":""}',
    }
    sent = tarfile.open(fileobj=io.BytesIO(gzip.decompress(build.body)))
    assert set(sent.getnames()) == {".dockerignore", "Dockerfile", "app", "ci", "ci/Dockerfile"}


def test_the_oci_archive_is_saved_when_asked(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    archive = tmp_path / "image.tar"
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path, "--output", str(archive))
    assert step.returncode == 0, step.text
    assert archive.read_bytes() == oci_archive()
    assert [seen.method for seen in standins.seen] == ["POST", "GET", "DELETE"]


def test_an_archive_that_is_not_the_image_built_is_not_saved(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    standins.image = oci_archive("sha256:" + "e" * 64)
    archive = tmp_path / "image.tar"
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path, "--output", str(archive))
    assert step.returncode == 12
    assert "does not name the image built" in exit_message(step)
    assert not archive.exists() and not (tmp_path / "image.tar.part").exists()
    assert len(standins.deletes()) == 1


def test_a_failed_build_names_its_step_exits_8_and_stops_the_builder(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    standins.script = [
        stream("STEP 1/3: FROM scratch\n"),
        stream("STEP 2/3: RUN make test\n"),
        stream("1 test failed\n"),
        failure("RUN make test: exit status 2"),
    ]
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    assert step.returncode == 8
    assert (
        "the build failed at STEP 2/3: RUN make test: RUN make test: exit status 2"
        in exit_message(step)
    )
    assert len(standins.deletes()) == 1 and "stopped" in step.stdout
    assert "digest" not in step.outputs


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_an_interrupted_build_still_stops_the_builder(
    signum: signal.Signals,
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    """A cancelled job's step gets SIGINT, then SIGTERM: either one stops the builder."""
    standins.script = [stream("STEP 1/2: RUN sleep 3600\n"), standins.gate(), success()]
    env = build_env(tmp_path / "o", oidc_issuer.token())
    process = start_build(*args(builder_service, context_dir), env=env)
    assert process.stdout is not None
    for line in process.stdout:
        if "STEP 1/2: RUN sleep 3600" in line:
            break
    process.send_signal(signum)
    step = finish(process, env)
    assert step.returncode == 128 + signum
    assert f"interrupted by {signum.name}" in exit_message(step)
    assert len(standins.deletes()) == 1 and standins.deletes()[0].authorized
    assert "stopped: its storage is gone" in step.stdout


def test_a_build_interrupted_during_the_exchange_stops_the_builder_it_was_given(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    """The signal comes while the service is starting the builder: the step waits for the
    exchange's answer (else the builder would run on unknown), then stops that builder."""
    standins.start_gate = standins.gate()
    env = build_env(tmp_path / "o", oidc_issuer.token())
    process = start_build(*args(builder_service, context_dir), env=env)
    assert standins.starting.wait(30)
    process.send_signal(signal.SIGTERM)
    standins.start_gate.open()
    step = finish(process, env)
    assert step.returncode == 128 + signal.SIGTERM
    assert standins.builds() == []
    assert len(standins.deletes()) == 1 and "stopped: its storage is gone" in step.stdout, step.text


def test_a_stream_cut_short_ends_with_exit_12_and_stops_the_builder(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    standins.script = [stream("STEP 1/2: FROM scratch\n")]
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    assert step.returncode == 12
    assert "ended before the builder said how the build went" in exit_message(step)
    assert len(standins.deletes()) == 1


def test_a_context_the_builder_finds_too_large_ends_with_exit_13_and_stops_it(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    standins.refusal = (413, "request_too_large", "the build context is too large")
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    assert step.returncode == 13
    assert "too large" in exit_message(step) and ".dockerignore" in exit_message(step)
    assert len(standins.deletes()) == 1


def test_a_context_over_the_limit_is_refused_before_the_token_is_spent(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
    http: httpx.Client,
) -> None:
    (context_dir / "big.bin").write_bytes(bytes(range(256)) * 64 * 4)  # 64 KiB, compresses
    (context_dir / "noise.bin").write_bytes(os.urandom(8 * 1024))
    token = oidc_issuer.token()
    step = the_build(
        builder_service, oidc_issuer, context_dir, tmp_path, "--max-context", "4K", token=token
    )
    assert step.returncode == 13
    assert "nothing was sent and no builder was started" in exit_message(step)
    assert standins.seen == []
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": token,
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "audience": PROJECT,
    }
    assert http.post(f"{builder_service.url}/token", data=form).status_code == 200


def test_a_project_without_trust_relationship_ends_with_exit_9(
    builder_service: RunningService,
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    assert step.returncode == 9
    message = exit_message(step)
    assert "(invalid_target): no trust relationship names this project" in message
    assert "issuer trust add --project octo-org/octo-repo" in message
    assert standins.seen == []


def test_a_token_no_relationship_allows_ends_with_exit_9(
    builder_service: RunningService,
    trust: AdminClient,
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    trust.add({"project": PROJECT, "issuer": oidc_issuer.url, "repository": "octo-org/other"})
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    assert step.returncode == 9
    assert "(access_denied): no trust relationship of this project allows" in exit_message(step)


def test_the_builder_limit_ends_with_exit_10_and_says_when_to_retry(
    builder_service: RunningService,
    trust: AdminClient,
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
    http: httpx.Client,
) -> None:
    trust.add(
        {"project": PROJECT, "issuer": oidc_issuer.url, "repository": PROJECT, "max_builders": 1}
    )
    form = {
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange",
        "subject_token": oidc_issuer.token(),
        "subject_token_type": "urn:ietf:params:oauth:token-type:id_token",
        "audience": PROJECT,
    }
    assert http.post(f"{builder_service.url}/token", data=form).status_code == 200
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    assert step.returncode == 10
    message = exit_message(step)
    assert "the builder limit is reached" in message and "max_builders" in message
    assert "about " in message


@pytest.mark.parametrize(
    ("claims", "fix"),
    [
        ({"exp": 1, "iat": 0, "nbf": 0}, "run the build right after the token step"),
        ({"aud": "https://elsewhere.example"}, "set the token step's `audience`"),
    ],
    ids=["expired", "audience"],
)
def test_a_refused_token_ends_with_exit_11_and_the_fix(
    claims: dict[str, Any],
    fix: str,
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    token = oidc_issuer.token(**claims)
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path, token=token)
    assert step.returncode == 11
    assert "(invalid_grant)" in exit_message(step) and fix in exit_message(step)


def test_a_token_already_exchanged_ends_with_exit_11(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    token = oidc_issuer.token()
    assert (
        the_build(builder_service, oidc_issuer, context_dir, tmp_path, token=token).returncode == 0
    )
    again = the_build(builder_service, oidc_issuer, context_dir, tmp_path, token=token)
    assert again.returncode == 11
    assert "a token buys one builder" in exit_message(again)


def test_an_unreachable_builder_service_is_retried_then_ends_with_exit_12(
    oidc_issuer: FakeIssuer, context_dir: Path, tmp_path: Path
) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{free.getsockname()[1]}"
    env = build_env(tmp_path / "o", oidc_issuer.token())
    step = run_build(
        "--builder",
        url,
        "--project",
        PROJECT,
        "--context",
        str(context_dir),
        "--timeout",
        "2.5",
        env=env,
    )
    assert step.returncode == 12
    assert "retrying in 1 s" in step.stdout
    assert "the builder service could not be reached (ConnectError)" in exit_message(step)


def test_a_builder_that_could_not_be_started_is_asked_for_again_after_retry_after(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    """A 503 never spends the token (the service releases its jti), so it is retried."""
    standins.failed_starts = 1
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    assert step.returncode == 0, step.text
    assert "the builder service answered 503; retrying in 5 s" in step.stdout


def test_a_builder_service_unavailable_past_the_timeout_ends_with_exit_12(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    standins.failed_starts = 1
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path, "--timeout", "2")
    assert step.returncode == 12
    assert "(temporarily_unavailable): the builder could not be started" in exit_message(step)


def test_no_secret_is_ever_printed(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    """The OIDC token and the build token show only in their mask lines, each before any
    other line that could hold it."""
    token = oidc_issuer.token()
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path, token=token)
    assert step.returncode == 0, step.text
    build_token = standins.builds()[0].token
    lines = step.stdout.splitlines()
    assert lines[0] == f"::add-mask::{token}"
    for secret in (token, build_token):
        assert [line for line in lines if secret in line] == [f"::add-mask::{secret}"]
        assert secret not in step.stderr
    assert lines.index(f"::add-mask::{build_token}") < min(
        i for i, line in enumerate(lines) if "builder b-" in line
    )


def test_the_builds_output_cannot_issue_workflow_commands(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    standins: StandInBuilders,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    """A Dockerfile's RUN prints what it likes: the runner takes no command from it."""
    standins.script = [stream("::add-mask::x\n##[error]forged\n"), success()]
    step = the_build(builder_service, oidc_issuer, context_dir, tmp_path)
    lines = step.stdout.splitlines()
    stop = next(i for i, line in enumerate(lines) if line.startswith("::stop-commands::"))
    resume = lines.index(f"::{lines[stop].removeprefix('::stop-commands::')}::")
    forged = [i for i, line in enumerate(lines) if "forged" in line or "::add-mask::x" in line]
    assert forged and all(stop < i < resume for i in forged)


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({"ISSUER_OIDC_TOKEN": ""}, "no OIDC token"),
        ({"ISSUER_OIDC_TOKEN": "not a jwt but perhaps a secret"}, "does not hold a JWT"),
    ],
    ids=["missing", "malformed"],
)
def test_a_missing_or_malformed_token_is_a_usage_error_that_never_echoes_it(
    env: dict[str, str], expected: str, context_dir: Path, tmp_path: Path
) -> None:
    step = run_build(
        "--builder",
        "http://127.0.0.1:9",
        "--project",
        PROJECT,
        "--context",
        str(context_dir),
        env=build_env(tmp_path / "o", "", **env),
    )
    assert step.returncode == 2
    assert expected in exit_message(step)
    assert "perhaps a secret" not in step.text


def test_the_token_can_come_from_a_file(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(oidc_issuer.token() + "\n")
    env = build_env(tmp_path / "o", "")
    step = run_build(*args(builder_service, context_dir, "--token-file", str(token_file)), env=env)
    assert step.returncode == 0, step.text


def test_a_malformed_build_argument_is_a_usage_error(
    oidc_issuer: FakeIssuer, context_dir: Path, tmp_path: Path
) -> None:
    step = run_build(
        "--builder",
        "http://127.0.0.1:9",
        "--project",
        PROJECT,
        "--context",
        str(context_dir),
        "--build-arg",
        "=x",
        env=build_env(tmp_path / "o", oidc_issuer.token()),
    )
    assert step.returncode == 2
    assert "NAME=VALUE" in exit_message(step)


def test_outside_actions_nothing_is_masked_and_no_command_is_printed(
    builder_service: RunningService,
    trusted: dict[str, Any],
    oidc_issuer: FakeIssuer,
    context_dir: Path,
    tmp_path: Path,
) -> None:
    token = oidc_issuer.token()
    env = build_env(tmp_path / "o", token)
    del env["GITHUB_ACTIONS"], env["GITHUB_OUTPUT"]
    step = run_build(*args(builder_service, context_dir), env=env)
    assert step.returncode == 0, step.text
    assert "::" not in step.stdout.replace(DIGEST, "").replace(IMAGE_ID, "")
    assert token not in step.text
    assert f"image built: digest {DIGEST}" in step.stdout
