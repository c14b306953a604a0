"""Rendering the build stream (Docker Engine API build messages, API.md section 2)."""

from __future__ import annotations

import json

import pytest

from issuer.client.stream import BuildFailed, BuildResult, StreamBroken, StreamPrinter

DIGEST = "sha256:" + "d" * 64
IMAGE_ID = "sha256:" + "c" * 64


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def printer() -> tuple[StreamPrinter, list[str], Clock]:
    said: list[str] = []
    clock = Clock()
    return StreamPrinter(said.append, clock), said, clock


def line(**message: object) -> str:
    return json.dumps(message)


def aux(pushed: str | None = None) -> str:
    return line(aux={"ID": IMAGE_ID, "digest": DIGEST, "pushed": pushed})


def test_each_output_line_carries_the_elapsed_time_and_its_step() -> None:
    stream, said, clock = printer()
    stream.feed(line(stream="STEP 1/2: FROM busybox\n"))
    clock.now += 2.5
    stream.feed(line(stream="STEP 2/2: RUN make\n"))
    stream.feed(line(stream="cc -o app app.c\n"))
    assert said == [
        "    0.0s  STEP 1/2: FROM busybox",
        "    2.5s  STEP 2/2: RUN make",
        "    2.5s  STEP 2/2 | cc -o app app.c",
    ]


def test_a_line_split_over_several_messages_is_printed_once_whole() -> None:
    stream, said, _ = printer()
    stream.feed(line(stream="hel"))
    stream.feed(line(stream="lo wor"))
    assert said == []
    stream.feed(line(stream="ld\nnext"))
    assert said == ["    0.0s  hello world"]


def test_one_message_with_several_lines_prints_each() -> None:
    stream, said, _ = printer()
    stream.feed(line(stream="a\r\nb\rc\n"))
    assert said == ["    0.0s  a", "    0.0s  b", "    0.0s  c"]


def test_dockers_own_step_lines_are_recognised_too() -> None:
    stream, said, _ = printer()
    stream.feed(line(stream="Step 3/7 : COPY . /src\n"))
    stream.feed(line(stream="x\n"))
    assert stream.step == "Step 3/7 : COPY . /src"
    assert said[-1].endswith("STEP 3/7 | x")


def test_what_follows_the_last_step_is_labelled_as_the_commit() -> None:
    stream, said, _ = printer()
    stream.feed(line(stream="STEP 2/2: RUN make\nCOMMIT localhost/build:latest\n--> fce4613\n"))
    assert said[1:] == ["    0.0s  COMMIT localhost/build:latest", "    0.0s  COMMIT | --> fce4613"]
    assert stream.step == "STEP 2/2: RUN make"


def test_a_successful_build_ends_with_its_digest_and_pushed_reference() -> None:
    stream, _, _ = printer()
    stream.feed(line(stream="STEP 1/1: FROM scratch\n"))
    stream.feed(aux("registry.local/app:pr-7-0123456789ab@" + DIGEST))
    assert stream.finish() == BuildResult(
        IMAGE_ID, DIGEST, "registry.local/app:pr-7-0123456789ab@" + DIGEST
    )


def test_a_build_that_pushed_nothing_says_pushed_none() -> None:
    stream, _, _ = printer()
    stream.feed(aux(None))
    assert stream.finish().pushed is None


def test_a_failed_build_names_the_last_step_seen_and_the_error() -> None:
    stream, said, _ = printer()
    stream.feed(line(stream="STEP 1/3: FROM busybox\n"))
    stream.feed(line(stream="STEP 2/3: RUN make\n"))
    stream.feed(line(stream="make: *** No rule to make target\n"))
    stream.feed(line(error="exit status 2", errorDetail={"message": "RUN make: exit status 2"}))
    with pytest.raises(BuildFailed) as failed:
        stream.finish()
    assert str(failed.value) == "the build failed at STEP 2/3: RUN make: RUN make: exit status 2"
    assert said[-1] == "    0.0s  STEP 2/3 | error: RUN make: exit status 2"


def test_a_failure_before_any_step_says_so() -> None:
    stream, _, _ = printer()
    stream.feed(line(error="no Dockerfile", errorDetail={"message": "no Dockerfile"}))
    with pytest.raises(BuildFailed, match="before its first step: no Dockerfile"):
        stream.finish()


def test_an_error_message_is_one_line_so_it_cannot_start_a_workflow_command() -> None:
    stream, _, _ = printer()
    stream.feed(line(error="x", errorDetail={"message": "bad\n::add-mask::x\nthing"}))
    with pytest.raises(BuildFailed) as failed:
        stream.finish()
    assert "\n" not in str(failed.value)


def test_a_stream_that_ends_without_an_outcome_is_broken() -> None:
    stream, _, _ = printer()
    stream.feed(line(stream="STEP 1/2: FROM busybox\n"))
    with pytest.raises(StreamBroken, match="ended before"):
        stream.finish()


def test_a_line_that_is_not_json_is_refused() -> None:
    stream, _, _ = printer()
    with pytest.raises(StreamBroken, match="not JSON"):
        stream.feed("<html>bad gateway</html>")


@pytest.mark.parametrize(
    "result",
    [
        {"ID": IMAGE_ID, "digest": "sha256:short", "pushed": None},
        {"ID": "nope", "digest": DIGEST, "pushed": None},
        {"ID": IMAGE_ID, "digest": DIGEST, "pushed": "a b\n::set-output"},
    ],
    ids=["digest", "id", "pushed"],
)
def test_a_malformed_result_is_refused(result: dict[str, object]) -> None:
    stream, _, _ = printer()
    with pytest.raises(StreamBroken, match="result names"):
        stream.feed(line(aux=result))


def test_other_aux_messages_are_not_the_result() -> None:
    stream, _, _ = printer()
    stream.feed(line(aux={"ID": IMAGE_ID}))
    with pytest.raises(StreamBroken):
        stream.finish()


def test_a_partial_last_line_is_printed_when_the_stream_ends() -> None:
    stream, said, _ = printer()
    stream.feed(line(stream="no newline at the end"))
    stream.feed(aux())
    stream.finish()
    assert said == ["    0.0s  no newline at the end"]
