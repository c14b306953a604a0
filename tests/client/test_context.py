"""Packing the build context: what Docker would send, links never followed, a size limit
enforced while packing."""

from __future__ import annotations

import gzip
import io
import os
import tarfile
from pathlib import Path

import pytest

from issuer.client.context import (
    ContextError,
    ContextTooLarge,
    dockerfile_in_context,
    pack,
)

LIMIT = 1024 * 1024


def make(root: Path, files: dict[str, str]) -> Path:
    for name, content in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(content)
    return root


def packed(context: Path, dockerfile: str = "Dockerfile", limit: int = LIMIT) -> tarfile.TarFile:
    archive = pack(context, dockerfile, limit)
    data = b"".join(archive.chunks())
    archive.close()
    return tarfile.open(fileobj=io.BytesIO(data), mode="r:gz")


def names(context: Path, dockerfile: str = "Dockerfile") -> set[str]:
    return set(packed(context, dockerfile).getnames())


def test_everything_is_sent_without_a_dockerignore(tmp_path: Path) -> None:
    make(tmp_path, {"Dockerfile": "FROM scratch\n", "src/app.py": "print(1)\n"})
    assert names(tmp_path) == {"Dockerfile", "src", "src/app.py"}


def test_what_the_dockerignore_excludes_is_not_sent(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "Dockerfile": "FROM scratch\n",
            ".dockerignore": "**/*.log\nnode_modules\n.git\n",
            "app.log": "x",
            "src/deep/debug.log": "x",
            "src/main.c": "x",
            "node_modules/left-pad/index.js": "x",
            ".git/config": "x",
        },
    )
    assert names(tmp_path) == {"Dockerfile", ".dockerignore", "src", "src/deep", "src/main.c"}


def test_an_exception_brings_back_one_file_of_an_excluded_directory(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "Dockerfile": "FROM scratch\n",
            ".dockerignore": "dist\n!dist/keep.txt\n",
            "dist/keep.txt": "x",
            "dist/big.bin": "x",
        },
    )
    assert names(tmp_path) == {"Dockerfile", ".dockerignore", "dist/keep.txt"}


def test_an_exception_that_does_not_name_the_excluded_directory_does_not_open_it(
    tmp_path: Path,
) -> None:
    """Docker walks into an excluded directory only for an exception that starts with its
    path: `!**/keep.txt` does not bring back dist/keep.txt (a documented Docker quirk)."""
    make(
        tmp_path,
        {
            "Dockerfile": "FROM scratch\n",
            ".dockerignore": "dist\n!**/keep.txt\n",
            "dist/keep.txt": "x",
            "src/keep.txt": "x",
        },
    )
    assert names(tmp_path) == {"Dockerfile", ".dockerignore", "src", "src/keep.txt"}


def test_the_dockerfile_and_dockerignore_are_sent_even_when_they_exclude_themselves(
    tmp_path: Path,
) -> None:
    make(tmp_path, {"Dockerfile": "FROM scratch\n", ".dockerignore": "*\n", "src/a": "x"})
    assert names(tmp_path) == {"Dockerfile", ".dockerignore"}


def test_a_dockerfile_in_an_excluded_directory_is_still_sent(tmp_path: Path) -> None:
    make(
        tmp_path,
        {
            "docker/Dockerfile.ci": "FROM scratch\n",
            "docker/other": "x",
            ".dockerignore": "docker\n",
        },
    )
    assert names(tmp_path, "docker/Dockerfile.ci") == {".dockerignore", "docker/Dockerfile.ci"}


def test_a_link_to_a_file_outside_the_context_is_sent_as_a_link_not_as_the_file(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside-secret"
    outside.write_text("THE-RUNNERS-SECRET")
    context = make(tmp_path / "ctx", {"Dockerfile": "FROM scratch\n"})
    (context / "leak").symlink_to(outside)
    archive = pack(context, "Dockerfile", LIMIT)
    data = gzip.decompress(b"".join(archive.chunks()))
    archive.close()
    member = tarfile.open(fileobj=io.BytesIO(data)).getmember("leak")
    assert member.issym() and member.linkname == str(outside)
    assert b"THE-RUNNERS-SECRET" not in data


def test_a_link_to_a_directory_outside_the_context_is_not_walked_into(tmp_path: Path) -> None:
    make(tmp_path / "elsewhere", {"private.key": "KEY"})
    context = make(tmp_path / "ctx", {"Dockerfile": "FROM scratch\n"})
    (context / "data").symlink_to(tmp_path / "elsewhere", target_is_directory=True)
    archive = packed(context)
    assert archive.getnames() == ["Dockerfile", "data"]
    assert archive.getmember("data").issym()


def test_files_are_owned_by_root_with_no_names_as_docker_sends_them(tmp_path: Path) -> None:
    make(tmp_path, {"Dockerfile": "FROM scratch\n", "src/a": "x"})
    for member in packed(tmp_path).getmembers():
        assert (member.uid, member.gid, member.uname, member.gname) == (0, 0, "", "")


def test_file_modes_and_contents_travel_unchanged(tmp_path: Path) -> None:
    make(tmp_path, {"Dockerfile": "FROM scratch\n", "run.sh": "#!/bin/sh\necho hi\n"})
    (tmp_path / "run.sh").chmod(0o750)
    archive = packed(tmp_path)
    member = archive.getmember("run.sh")
    assert member.mode == 0o750
    extracted = archive.extractfile(member)
    assert extracted is not None and extracted.read() == b"#!/bin/sh\necho hi\n"


def test_a_pipe_is_left_out_and_named(tmp_path: Path) -> None:
    make(tmp_path, {"Dockerfile": "FROM scratch\n"})
    os.mkfifo(tmp_path / "pipe")
    archive = pack(tmp_path, "Dockerfile", LIMIT)
    archive.close()
    assert archive.skipped == ["pipe"]


def test_a_context_over_the_limit_is_refused_while_packing(tmp_path: Path) -> None:
    make(tmp_path, {"Dockerfile": "FROM scratch\n"})
    (tmp_path / "random.bin").write_bytes(os.urandom(256 * 1024))
    with pytest.raises(ContextTooLarge) as refused:
        pack(tmp_path, "Dockerfile", 128 * 1024)
    assert refused.value.limit == 128 * 1024


def test_a_context_just_under_the_limit_is_packed(tmp_path: Path) -> None:
    make(tmp_path, {"Dockerfile": "FROM scratch\n"})
    (tmp_path / "random.bin").write_bytes(os.urandom(64 * 1024))
    archive = pack(tmp_path, "Dockerfile", 128 * 1024)
    assert 64 * 1024 < archive.size <= 128 * 1024
    archive.close()


def test_the_dockerfile_path_is_taken_relative_to_the_context(tmp_path: Path) -> None:
    make(tmp_path, {"ci/Dockerfile": "FROM scratch\n"})
    assert dockerfile_in_context(tmp_path, tmp_path / "ci" / "Dockerfile") == "ci/Dockerfile"
    assert dockerfile_in_context(tmp_path / "ci", None) == "Dockerfile"


def test_a_dockerfile_outside_the_context_is_refused(tmp_path: Path) -> None:
    make(tmp_path, {"Dockerfile": "FROM scratch\n", "ctx/a": "x"})
    with pytest.raises(ContextError, match="not inside the context"):
        dockerfile_in_context(tmp_path / "ctx", tmp_path / "Dockerfile")


def test_a_missing_dockerfile_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ContextError, match="no Dockerfile"):
        dockerfile_in_context(tmp_path, None)


def test_a_malformed_dockerignore_is_refused_naming_the_pattern(tmp_path: Path) -> None:
    make(tmp_path, {"Dockerfile": "FROM scratch\n", ".dockerignore": "[a-\n"})
    with pytest.raises(ContextError, match=r"\.dockerignore: pattern '\[a-' is malformed"):
        pack(tmp_path, "Dockerfile", LIMIT)
