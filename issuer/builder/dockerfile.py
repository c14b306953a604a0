"""The base images a Dockerfile asks for, and whether the operator allows them.

Read before anything is built, on the trusted side: every image a build may start from or
copy out of (``FROM``, ``COPY --from=``, ``RUN --mount=...,from=``) must come from a registry
in ``BUILDER_REGISTRIES``. The service pulls those itself; the build's own steps have no
network to pull anything else, and buildah runs with ``--pull=never``.

Global ``ARG``s (before the first ``FROM``) are substituted as Docker does, the build's
``buildargs`` overriding their defaults. What cannot be resolved here (a variable in
``--from``, an unterminated line) is refused rather than guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_DOCKERFILE = 1024 * 1024
SCRATCH = "scratch"
DOCKER_HUB = "docker.io"

_DIRECTIVE = re.compile(r"^#\s*([a-zA-Z]+)\s*=\s*(\S+)\s*$")
_VARIABLE = re.compile(
    r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*)(?::?[-+]([^}]*))?\}|([A-Za-z_][A-Za-z0-9_]*))"
)
_PATH = re.compile(
    r"^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$"
)
_REFERENCE = re.compile(
    r"^(?:(?P<host>[A-Za-z0-9.-]+(?::[0-9]+)?|\[[0-9a-fA-F:]+\](?::[0-9]+)?)/)?"
    r"(?P<path>[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*)"
    r"(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?"
    r"(?:@(?P<digest>sha256:[0-9a-f]{64}))?$"
)


class DockerfileError(ValueError):
    """The Dockerfile cannot be built here; the message says why (no secret in it)."""


@dataclass(frozen=True)
class ImageReference:
    """A fully qualified image reference: ``registry/path[:tag][@digest]``."""

    registry: str
    path: str
    tag: str | None
    digest: str | None

    def __str__(self) -> str:
        text = f"{self.registry}/{self.path}"
        if self.tag is not None:
            text += f":{self.tag}"
        if self.digest is not None:
            text += f"@{self.digest}"
        return text


def parse_reference(text: str) -> ImageReference:
    """A reference as Docker reads it: a first component with a dot, a colon or ``localhost``
    names the registry; otherwise the image is Docker Hub's (``library/`` for one component).
    Without tag or digest, ``latest``."""
    match = _REFERENCE.match(text)
    if match is None or len(text) > 512:
        raise DockerfileError(f"{text!r} is not an image reference")
    host, path = match["host"], match["path"]
    if host is not None and not ("." in host or ":" in host or host == "localhost"):
        host, path = None, f"{host}/{path}"
        if _PATH.match(path) is None:
            raise DockerfileError(f"{text!r} is not an image reference")
    if host is None:
        host = DOCKER_HUB
        if "/" not in path:
            path = f"library/{path}"
    tag = match["tag"]
    if tag is None and match["digest"] is None:
        tag = "latest"
    return ImageReference(host.lower(), path, tag, match["digest"])


def logical_lines(text: str) -> list[str]:
    """The instructions of a Dockerfile: comments dropped, continuation lines joined (with the
    escape character of an ``# escape=`` parser directive, ``\\`` by default)."""
    escape = "\\"
    lines = text.split("\n")
    for line in lines:
        directive = _DIRECTIVE.match(line.strip())
        if directive is None:
            break
        if directive[1].lower() == "escape" and directive[2] in ("\\", "`"):
            escape = directive[2]
    joined: list[str] = []
    current = ""
    for raw in lines:
        line = raw.rstrip("\r")
        stripped = line.strip()
        if stripped.startswith("#"):
            continue
        if not stripped and not current:
            continue
        if line.rstrip().endswith(escape):
            current += line.rstrip()[:-1] + " "
            continue
        current += line
        if current.strip():
            joined.append(current.strip())
        current = ""
    if current.strip():
        raise DockerfileError("the last instruction ends with a line continuation")
    return joined


def _substitute(text: str, values: Mapping[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match[1] or match[3]
        value = values.get(name, "")
        modifier = match[0][2 + len(name) : 4 + len(name)] if match[1] else ""
        if modifier.startswith(":-") or modifier.startswith("-"):
            return value or (match[2] or "")
        if modifier.startswith(":+") or modifier.startswith("+"):
            return (match[2] or "") if value else ""
        return value

    return _VARIABLE.sub(replace, text)


def _flags(words: list[str]) -> tuple[dict[str, str], list[str]]:
    flags: dict[str, str] = {}
    rest = list(words)
    while rest and rest[0].startswith("--"):
        name, _, value = rest.pop(0)[2:].partition("=")
        flags[name.lower()] = value
    return flags, rest


def base_images(text: str, build_args: Mapping[str, str]) -> list[ImageReference]:
    """Every image the Dockerfile's stages start from or copy from, in order, without repeats
    (``scratch`` and earlier stages excluded)."""
    if len(text) > MAX_DOCKERFILE:
        raise DockerfileError(f"the Dockerfile is over {MAX_DOCKERFILE} bytes")
    global_args: dict[str, str] = {}
    stages: list[str] = []
    images: list[ImageReference] = []
    seen_from = False

    def add(reference: str) -> None:
        if reference.lower() == SCRATCH or reference.lower() in stages:
            return
        if reference.isdigit() and int(reference) < len(stages):
            return
        image = parse_reference(reference)
        if image not in images:
            images.append(image)

    for line in logical_lines(text):
        instruction, _, arguments = line.partition(" ")
        keyword = instruction.upper()
        words = arguments.split()
        if keyword == "ARG" and not seen_from:
            for word in words:
                name, has_default, default = word.partition("=")
                value = build_args.get(name, default if has_default else "")
                global_args[name] = _substitute(value, global_args)
        elif keyword == "FROM":
            seen_from = True
            _, rest = _flags(words)
            if not rest:
                raise DockerfileError("a FROM instruction names no image")
            reference = _substitute(rest[0], global_args)
            if not reference or "$" in reference:
                raise DockerfileError(f"FROM {rest[0]} does not resolve to an image")
            add(reference)
            if len(rest) >= 3 and rest[1].upper() == "AS":
                stages.append(rest[2].lower())
            else:
                stages.append(f"<stage {len(stages)}>")
        elif keyword in ("COPY", "ADD"):
            flags, _ = _flags(words)
            if "from" in flags:
                add(_checked_from(flags["from"]))
        elif keyword == "RUN":
            flags, _ = _flags(words)
            for name, value in flags.items():
                if name == "mount":
                    for option in value.split(","):
                        key, _, source = option.partition("=")
                        if key.strip().lower() == "from":
                            add(_checked_from(source.strip()))
    if not seen_from:
        raise DockerfileError("the Dockerfile has no FROM instruction")
    return images


def _checked_from(value: str) -> str:
    if not value or "$" in value:
        raise DockerfileError(f"--from={value} must name a stage or an image literally")
    return value


def disallowed(images: Iterable[ImageReference], registries: Iterable[str]) -> list[str]:
    """The images whose registry the operator does not list, as text for the error line."""
    allowed = {registry.lower() for registry in registries}
    return [str(image) for image in images if image.registry not in allowed]
