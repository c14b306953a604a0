"""The .dockerignore rules are Docker's: the expectations below are those of moby's own
patternmatcher and ignorefile tests, and of Docker's documentation."""

from __future__ import annotations

import pytest

from issuer.client.dockerignore import (
    IgnoreFileError,
    PatternMatcher,
    keep_build_files,
    read_patterns,
)


def excludes(patterns: list[str], path: str) -> bool:
    return PatternMatcher(patterns).excludes(path)


def test_comments_blank_lines_and_a_byte_order_mark_are_not_patterns() -> None:
    text = "\ufeff# a comment\n\n  \nnode_modules\n"
    assert read_patterns(text) == ["node_modules"]


def test_patterns_are_cleaned_and_a_leading_slash_means_the_context_root() -> None:
    text = "test1\n/test2\n/a/file/here\n! /inverted/abs/path\nx/../y/./z/\n"
    assert read_patterns(text) == ["test1", "test2", "a/file/here", "!inverted/abs/path", "y/z"]


def test_a_pattern_excludes_a_directory_and_everything_under_it() -> None:
    assert excludes(["build"], "build/out/app.bin")
    assert not excludes(["build"], "src/build")


def test_a_star_stays_within_one_path_segment() -> None:
    assert excludes(["*/temp*"], "somedir/temporary.txt")
    assert not excludes(["*/temp*"], "somedir/sub/temporary.txt")
    assert not excludes(["*/temp*"], "temporary.txt")


def test_a_question_mark_is_one_character_but_never_a_slash() -> None:
    assert excludes(["temp?"], "tempa")
    assert not excludes(["temp?"], "temp/a")


def test_a_double_star_spans_any_number_of_directories() -> None:
    assert excludes(["**/*.go"], "main.go")
    assert excludes(["**/*.go"], "a/b/c/main.go")
    assert excludes(["a/**/z"], "a/z")
    assert excludes(["a/**/z"], "a/b/c/z")
    assert not excludes(["a/**/z"], "b/z")


def test_a_trailing_double_star_takes_everything_under_a_directory() -> None:
    assert excludes(["docs/**"], "docs/a/b.md")
    assert not excludes(["docs/**"], "doc")


def test_an_exception_re_includes_what_an_earlier_pattern_excluded() -> None:
    patterns = ["*.md", "!README.md"]
    assert excludes(patterns, "CHANGES.md")
    assert not excludes(patterns, "README.md")


def test_the_last_matching_pattern_wins() -> None:
    assert excludes(["*.md", "!README*.md", "README-secret.md"], "README-secret.md")
    assert not excludes(["*.md", "!README*.md", "README-secret.md"], "README-public.md")


def test_an_exception_inside_an_excluded_directory_re_includes_one_file() -> None:
    patterns = ["build", "!build/keep.txt"]
    assert not excludes(patterns, "build/keep.txt")
    assert excludes(patterns, "build/other.txt")


def test_regular_expression_characters_are_literal() -> None:
    assert excludes(["a+b(c).txt"], "a+b(c).txt")
    assert not excludes(["a.txt"], "abtxt")


def test_an_escaped_star_is_a_literal_star() -> None:
    assert excludes(["a\\*"], "a*")
    assert not excludes(["a\\*"], "ab")


def test_a_lone_exclamation_mark_is_refused_as_docker_refuses_it() -> None:
    with pytest.raises(IgnoreFileError, match="illegal exclusion pattern"):
        PatternMatcher(read_patterns("!\n"))


def test_a_malformed_character_class_is_refused() -> None:
    with pytest.raises(IgnoreFileError, match="malformed"):
        PatternMatcher(["[a-"])


def test_the_dockerfile_and_the_ignore_file_are_kept_even_when_excluded() -> None:
    kept = PatternMatcher(keep_build_files(["*", "docker"], "docker/Dockerfile.ci"))
    assert not kept.excludes(".dockerignore")
    assert not kept.excludes("docker/Dockerfile.ci")
    assert kept.excludes("docker/other")
    assert kept.excludes("src")
