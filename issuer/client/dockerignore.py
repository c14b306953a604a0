"""Docker's ``.dockerignore`` rules, as the Docker CLI and BuildKit apply them to a context.

A port of moby/patternmatcher (its ``ignorefile`` reader, ``Pattern`` and the matching with
parents' results) so that a context sent by ``issuer build`` holds exactly what ``docker
build`` would send: a pattern matches a path or any of its parent directories, ``*`` and
``?`` stop at ``/``, ``**`` spans directories, ``!`` re-includes, the last matching pattern
wins. No maintained Python package implements these rules (docker-py's differ in corners and
would bring ``requests`` along), hence the port.
"""

from __future__ import annotations

import posixpath
import re
from dataclasses import dataclass, field

_BOM = "\ufeff"
# Characters that are special in a regular expression but not in a Docker pattern.
_ESCAPED = set(".+()|{}$")


class IgnoreFileError(ValueError):
    """A pattern of the ``.dockerignore`` that Docker refuses too."""


def _clean(path: str) -> str:
    """Go's ``filepath.Clean`` on a slash path (``posixpath.normpath`` keeps a leading ``//``)."""
    cleaned = posixpath.normpath(path)
    return "/" + cleaned.lstrip("/") if cleaned.startswith("//") else cleaned


def read_patterns(text: str) -> list[str]:
    """The patterns of a ``.dockerignore``: comments and blank lines dropped, each pattern
    cleaned and made relative to the context (``/foo`` is ``foo``), ``!`` kept in front."""
    patterns = []
    for number, raw in enumerate(text.splitlines()):
        line = raw.removeprefix(_BOM) if number == 0 else raw
        if line.startswith("#"):
            continue
        pattern = line.strip()
        if not pattern:
            continue
        invert = pattern.startswith("!")
        if invert:
            pattern = pattern[1:].strip()
        if pattern:
            pattern = _clean(pattern)
            if len(pattern) > 1 and pattern.startswith("/"):
                pattern = pattern[1:]
        patterns.append("!" + pattern if invert else pattern)
    return patterns


@dataclass
class Pattern:
    text: str
    """The cleaned pattern, without its ``!``."""
    exclusion: bool
    _match: re.Pattern[str] | None = field(default=None, repr=False)
    _kind: str = field(default="exact", repr=False)

    @classmethod
    def parse(cls, text: str, exclusion: bool) -> Pattern:
        pattern = cls(text, exclusion)
        pattern._compile()
        return pattern

    def _compile(self) -> None:
        """The pattern as a regular expression, and the shortcuts Docker takes (an exact
        name, a ``prefix/**``, a ``**/suffix``), with Docker's quirks."""
        regex, kind = "^", "exact"
        text, i, first = self.text, 0, True
        while i < len(text):
            char = text[i]
            i += 1
            if char == "*":
                if i < len(text) and text[i] == "*":
                    i += 1
                    if i < len(text) and text[i] == "/":
                        i += 1
                    if i >= len(text):
                        if kind == "exact":
                            kind = "prefix"
                        else:
                            regex += ".*"
                            kind = "regex"
                    else:
                        regex += "(.*/)?"
                        kind = "regex"
                    if first:
                        kind = "suffix"
                else:
                    regex += "[^/]*"
                    kind = "regex"
            elif char == "?":
                regex += "[^/]"
                kind = "regex"
            elif char in _ESCAPED:
                regex += "\\" + char
            elif char == "\\":
                if i >= len(text):
                    raise IgnoreFileError(f"pattern {self.text!r} ends with a lone backslash")
                regex += "\\" + text[i]
                i += 1
                kind = "regex"
            elif char in "[]":
                regex += char
                kind = "regex"
            else:
                regex += char
            first = False
        self._kind = kind
        try:
            self._match = re.compile(regex + "$")
        except re.error:
            raise IgnoreFileError(f"pattern {self.text!r} is malformed") from None

    def matches(self, path: str) -> bool:
        if self._kind == "exact":
            return path == self.text
        if self._kind == "prefix":
            return path.startswith(self.text[:-2])
        if self._kind == "suffix":
            suffix = self.text[2:]
            if path.endswith(suffix):
                return True
            return suffix.startswith("/") and path == suffix[1:]
        assert self._match is not None
        return self._match.match(path) is not None


MatchInfo = tuple[bool, ...]
"""Which patterns matched a directory: its children inherit those matches."""


class PatternMatcher:
    """Decides which paths of a context a list of patterns excludes."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[Pattern] = []
        for raw in patterns:
            text = raw.strip()
            if not text:
                continue
            text = _clean(text)
            exclusion = text.startswith("!")
            if exclusion:
                if len(text) == 1:
                    raise IgnoreFileError('illegal exclusion pattern: "!"')
                text = text[1:]
            self.patterns.append(Pattern.parse(text, exclusion))
        self.has_exclusions = any(p.exclusion for p in self.patterns)

    def excludes(self, path: str) -> bool:
        """Whether ``path`` (slash-separated, relative) is excluded: a pattern matches it or
        one of its parent directories, and no later exception matches it."""
        path = _clean(path)
        if path == ".":
            return False
        parents = path.split("/")[:-1]
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            match = pattern.matches(path) or any(
                pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents))
            )
            if match:
                matched = not pattern.exclusion
        return matched

    def excludes_in_walk(self, path: str, parent: MatchInfo | None) -> tuple[bool, MatchInfo]:
        """:meth:`excludes` for a walk from the top: ``parent`` is what this returned for
        the parent directory (None at the top), as Docker's walk does it."""
        matched = False
        info = []
        for index, pattern in enumerate(self.patterns):
            match = parent[index] if parent is not None else False
            if not match:
                if pattern.exclusion != matched:
                    info.append(False)
                    continue
                match = pattern.matches(path)
                if not match and parent is None and "/" in path:
                    parents = path.split("/")[:-1]
                    match = any(
                        pattern.matches("/".join(parents[: i + 1])) for i in range(len(parents))
                    )
            info.append(match)
            if match:
                matched = not pattern.exclusion
        return matched, tuple(info)

    def may_reinclude_below(self, directory: str) -> bool:
        """Whether an exception could re-include something inside an excluded directory:
        Docker walks into it only if an exception's text starts with ``directory/``."""
        prefix = directory + "/"
        return any(p.exclusion and (p.text + "/").startswith(prefix) for p in self.patterns)


def keep_build_files(patterns: list[str], dockerfile: str) -> list[str]:
    """The patterns with exceptions added so that ``.dockerignore`` and the Dockerfile are
    always sent (the builder needs both; Docker's CLI does the same)."""
    matcher = PatternMatcher(patterns)
    kept = list(patterns)
    if matcher.excludes(".dockerignore"):
        kept.append("!.dockerignore")
    if matcher.excludes(dockerfile):
        kept.append("!" + dockerfile)
    return kept
