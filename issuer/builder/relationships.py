"""Trust relationships: which tokens may get builders for a project, validated strictly.

A relationship is written by an operator (admin API, ``issuer trust add``, a YAML file) and
read by :mod:`.policy` at every exchange. Writes are refused with the reason when a key is
unknown, when both or neither of ``repository`` and ``repository_pattern`` are given, when a
pattern does not compile, or when the relationship would constrain nothing. Patterns are
full matches: ``a|b`` is compiled as ``(?:a|b)`` and matched against the whole value, so it
matches neither ``a-evil`` nor ``a`` followed by a newline.
"""

from __future__ import annotations

import re
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from issuer.builder.push import valid_repository

FIELDS = (
    "project",
    "issuer",
    "repository",
    "repository_pattern",
    "events",
    "claims",
    "ttl",
    "max_builders",
    "push",
    "egress",
)
STORED_FIELDS = (*FIELDS, "id", "created_at")
DEFAULT_EVENTS = ("pull_request",)
DEFAULT_TTL = 600
TTL_RANGE = (60, 3600)
DEFAULT_MAX_BUILDERS = 2
MAX_BUILDERS_RANGE = (1, 100)
MAX_PATTERN = 500
PROJECT = re.compile(r"[A-Za-z0-9][A-Za-z0-9._/:@-]{0,199}")
REPOSITORY = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9-]{0,38})/[A-Za-z0-9._-]{1,100}")
EVENT = re.compile(r"[a-z][a-z_]{0,63}")
CLAIM_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")
RESERVED_CLAIMS = {
    "iss": "the issuer is the relationship's issuer field",
    "aud": "the audience is checked by the verifier",
    "exp": "times are checked by the verifier",
    "nbf": "times are checked by the verifier",
    "iat": "times are checked by the verifier",
    "jti": "jti is claimed once by the verifier",
    "repository": "use repository or repository_pattern",
    "event_name": "use events",
}


class InvalidRelationship(ValueError):
    """A relationship was refused; the message says why."""


def full_match(pattern: str) -> re.Pattern[str]:
    """The pattern as a whole-value match (``^(?:RE)$`` without ``$``'s newline leniency)."""
    return re.compile(f"(?:{pattern})")


def matches(compiled: re.Pattern[str], value: str) -> bool:
    return compiled.fullmatch(value) is not None


def _matches_anything(compiled: re.Pattern[str]) -> bool:
    """True if the pattern matches values it cannot have been meant for: the empty string,
    a single character, and fresh random repository names."""
    probes = [
        "",
        "a",
        "-",
        f"p{secrets.token_hex(6)}/q{secrets.token_hex(6)}",
        f"{secrets.token_hex(4)}-{secrets.token_hex(4)}.{secrets.token_hex(4)}",
    ]
    return all(matches(compiled, probe) for probe in probes)


@dataclass(frozen=True)
class TrustRelationship:
    id: str
    project: str
    issuer: str
    repository: str | None
    repository_pattern: str | None
    events: tuple[str, ...]
    claims: tuple[tuple[str, str], ...]
    ttl: int
    max_builders: int
    created_at: int
    push: str | None = None
    """The registry repository (``host[:port]/path``) its builders' images are pushed to."""
    egress: bool = False
    """Whether its builds may reach the internet (never the host's own or private addresses)."""
    _compiled: dict[str, re.Pattern[str]] = field(
        default_factory=dict, repr=False, compare=False, hash=False
    )

    def compiled(self, pattern: str) -> re.Pattern[str]:
        found = self._compiled.get(pattern)
        if found is None:
            found = self._compiled[pattern] = full_match(pattern)
        return found

    def as_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "id": self.id,
            "project": self.project,
            "issuer": self.issuer,
            "events": list(self.events),
            "claims": dict(self.claims),
            "ttl": self.ttl,
            "max_builders": self.max_builders,
            "push": self.push,
            "egress": self.egress,
            "created_at": self.created_at,
        }
        if self.repository is not None:
            body["repository"] = self.repository
        else:
            body["repository_pattern"] = self.repository_pattern
        return body

    def summary(self) -> str:
        who = (
            f"repository {self.repository}"
            if self.repository is not None
            else f"repository_pattern {self.repository_pattern}"
        )
        claims = "".join(f" claim {name}={pattern}" for name, pattern in self.claims)
        return (
            f"{self.id}  project {self.project}  issuer {self.issuer}  {who}"
            f"  events {','.join(self.events)}{claims}  ttl {self.ttl}s"
            f"  max_builders {self.max_builders}"
            + (f"  push {self.push}" if self.push else "")
            + ("  egress" if self.egress else "")
        )


def parse_relationship(
    raw: object, *, trusted_issuers: tuple[str, ...], stored: bool = False
) -> TrustRelationship:
    """A relationship from its JSON form; raises InvalidRelationship with the reason.

    ``stored`` accepts the ``id`` and ``created_at`` of a relationship already written;
    a new one gets fresh ones.
    """
    if not isinstance(raw, Mapping):
        raise InvalidRelationship("a trust relationship must be a mapping of fields")
    allowed = STORED_FIELDS if stored else FIELDS
    unknown = sorted(str(key) for key in raw if key not in allowed)
    if unknown:
        raise InvalidRelationship(f"unknown field {unknown[0]!r} (fields: {', '.join(FIELDS)})")
    project = _string(raw, "project", required=True)
    if not PROJECT.fullmatch(project):
        raise InvalidRelationship(
            "project must be letters, digits and . _ - / : @, at most 200 characters"
        )
    issuer = _string(raw, "issuer", required=True)
    if issuer not in trusted_issuers:
        raise InvalidRelationship(f"issuer {issuer!r} is not one of BUILDER_TRUSTED_ISSUERS")
    repository = _string(raw, "repository")
    pattern = _string(raw, "repository_pattern")
    if (repository is None) == (pattern is None):
        raise InvalidRelationship("give exactly one of repository and repository_pattern")
    if repository is not None and not REPOSITORY.fullmatch(repository):
        raise InvalidRelationship(f"repository {repository!r} is not OWNER/REPO")
    compiled: dict[str, re.Pattern[str]] = {}
    if pattern is not None:
        compiled[pattern] = _compile("repository_pattern", pattern)
    events = _events(raw.get("events"))
    claims = _claims(raw.get("claims"), compiled)
    if pattern is not None and _matches_anything(compiled[pattern]):
        narrowing = [name for name, claim in claims if not _matches_anything(compiled[claim])]
        if not narrowing:
            raise InvalidRelationship(
                "the relationship constrains nothing: repository_pattern matches any"
                " repository and no claim pattern narrows it"
            )
    ttl = _whole(raw, "ttl", DEFAULT_TTL, TTL_RANGE)
    max_builders = _whole(raw, "max_builders", DEFAULT_MAX_BUILDERS, MAX_BUILDERS_RANGE)
    push = _string(raw, "push")
    if push is not None and not valid_repository(push):
        raise InvalidRelationship(
            f"push {push[:200]!r} is not a registry repository (HOST[:PORT]/PATH, lowercase path)"
        )
    egress = raw.get("egress", False)
    if not isinstance(egress, bool):
        raise InvalidRelationship("egress must be true or false")
    if stored:
        rel_id = _string(raw, "id", required=True)
        created_at = _whole(raw, "created_at", 0, (0, 2**63))
    else:
        rel_id, created_at = "tr_" + secrets.token_hex(8), int(time.time())
    return TrustRelationship(
        rel_id,
        project,
        issuer,
        repository,
        pattern,
        events,
        claims,
        ttl,
        max_builders,
        created_at,
        push,
        egress,
        compiled,
    )


def _string(raw: Mapping[Any, Any], name: str, *, required: bool = False) -> Any:
    value = raw.get(name)
    if value is None:
        if required:
            raise InvalidRelationship(f"{name} is required")
        return None
    if not isinstance(value, str) or not value.strip():
        raise InvalidRelationship(f"{name} must be a non-empty string")
    return value


def _compile(name: str, pattern: str) -> re.Pattern[str]:
    if len(pattern) > MAX_PATTERN:
        raise InvalidRelationship(f"{name} is longer than {MAX_PATTERN} characters")
    try:
        return full_match(pattern)
    except re.error as error:
        raise InvalidRelationship(f"{name} {pattern!r} does not compile: {error}") from None


def _events(value: object) -> tuple[str, ...]:
    if value is None:
        return DEFAULT_EVENTS
    if isinstance(value, str) or not isinstance(value, list) or not value:
        raise InvalidRelationship("events must be a non-empty list of event names")
    for event in value:
        if not isinstance(event, str) or not EVENT.fullmatch(event):
            raise InvalidRelationship(f"event {event!r} is not an event name")
    return tuple(dict.fromkeys(value))


def _claims(value: object, compiled: dict[str, re.Pattern[str]]) -> tuple[tuple[str, str], ...]:
    if value is None:
        return ()
    if not isinstance(value, Mapping):
        raise InvalidRelationship("claims must be a mapping of claim name to pattern")
    claims: list[tuple[str, str]] = []
    for name, pattern in value.items():
        if not isinstance(name, str) or not CLAIM_NAME.fullmatch(name):
            raise InvalidRelationship(f"claim name {name!r} is not a claim name")
        if name in RESERVED_CLAIMS:
            raise InvalidRelationship(
                f"claim {name!r} cannot be constrained here: " + RESERVED_CLAIMS[name]
            )
        if not isinstance(pattern, str) or not pattern:
            raise InvalidRelationship(f"claim {name!r} needs a non-empty pattern")
        compiled[pattern] = _compile(f"claim {name!r}", pattern)
        claims.append((name, pattern))
    return tuple(sorted(claims))


def _whole(raw: Mapping[Any, Any], name: str, default: int, bounds: tuple[int, int]) -> int:
    value = raw.get(name)
    if value is None:
        return default
    if isinstance(value, float) and value.is_integer():
        value = int(value)  # JSON's 900.0 is the whole number 900 (as JSON Schema says)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRelationship(f"{name} must be a whole number")
    low, high = bounds
    if not low <= value <= high:
        raise InvalidRelationship(f"{name} must be between {low} and {high}")
    return value
