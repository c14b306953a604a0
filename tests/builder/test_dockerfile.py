"""Reading a Dockerfile's base images before anything is built (issuer/builder/dockerfile.py):
every image a stage starts from or copies from, as Docker resolves it."""

from __future__ import annotations

import pytest

from issuer.builder.dockerfile import (
    DockerfileError,
    ImageReference,
    base_images,
    disallowed,
    parse_reference,
)


def names(text: str, **build_args: str) -> list[str]:
    return [str(image) for image in base_images(text, build_args)]


@pytest.mark.parametrize(
    ("reference", "expected"),
    [
        ("alpine", "docker.io/library/alpine:latest"),
        ("user/tool:1", "docker.io/user/tool:1"),
        ("registry.example/team/tool:2", "registry.example/team/tool:2"),
        ("127.0.0.1:5000/base/busybox:1", "127.0.0.1:5000/base/busybox:1"),
        ("localhost/x", "localhost/x:latest"),
        ("reg.example/x@sha256:" + "a" * 64, "reg.example/x@sha256:" + "a" * 64),
    ],
)
def test_a_reference_names_its_registry_as_docker_reads_it(reference: str, expected: str) -> None:
    assert str(parse_reference(reference)) == expected


@pytest.mark.parametrize("reference", ["UPPER/case", "a b", "reg.example/x:", "", "x" * 600])
def test_a_malformed_reference_is_refused(reference: str) -> None:
    with pytest.raises(DockerfileError):
        parse_reference(reference)


def test_every_stage_and_copy_source_is_a_base_image_and_earlier_stages_are_not() -> None:
    text = (
        "FROM reg.example/build:1 AS build\n"
        "RUN make\n"
        "FROM scratch\n"
        "COPY --from=build /out /out\n"
        "COPY --from=0 /out /again\n"
        "COPY --from=reg.example/tools:2 /bin/t /t\n"
        "RUN --mount=type=bind,from=reg.example/cache:3,target=/c true\n"
    )
    assert names(text) == [
        "reg.example/build:1",
        "reg.example/tools:2",
        "reg.example/cache:3",
    ]


def test_global_args_are_substituted_and_build_args_override_their_defaults() -> None:
    text = "ARG REG=reg.example\nARG TAG=1\nFROM ${REG}/base:$TAG\n"
    assert names(text) == ["reg.example/base:1"]
    assert names(text, REG="evil.example") == ["evil.example/base:1"]


def test_an_arg_default_form_is_substituted() -> None:
    assert names("FROM ${REG:-reg.example}/base:1\n") == ["reg.example/base:1"]


def test_continuation_lines_and_comments_are_read_as_docker_reads_them() -> None:
    text = "# a comment\nFROM \\\n  reg.example/base:1 \\\n  AS first\nRUN echo hi\n"
    assert names(text) == ["reg.example/base:1"]


def test_the_escape_directive_changes_the_continuation_character() -> None:
    text = "# escape=`\nFROM `\n  reg.example/base:1\n"
    assert names(text) == ["reg.example/base:1"]


@pytest.mark.parametrize(
    "text",
    [
        "RUN true\n",  # no FROM
        "FROM\n",  # no image
        "FROM $UNSET_BUT_EMPTY\n",
        "FROM scratch\nCOPY --from=$STAGE /a /a\n",
        "FROM reg.example/x:1 \\",  # ends inside a continuation
    ],
)
def test_what_cannot_be_resolved_is_refused_not_guessed(text: str) -> None:
    with pytest.raises(DockerfileError):
        base_images(text, {})


def test_only_images_of_registries_not_listed_are_disallowed() -> None:
    images = [
        ImageReference("reg.example", "a", "1", None),
        ImageReference("docker.io", "library/alpine", "latest", None),
    ]
    assert disallowed(images, ["REG.example"]) == ["docker.io/library/alpine:latest"]
