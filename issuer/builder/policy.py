"""Evaluating trust relationships against a verified token, with a reason for every outcome.

In the manner of sigstore-python's verification policies: each check is a small object that
answers :class:`Outcome` (allowed or not, and why), :class:`AllOf` refuses to be built
empty (an empty policy would allow everything), and a relationship is the ``AllOf`` of its
checks. :func:`evaluate` tries a project's relationships in order and returns the first that
allows the token, or every relationship's reasons for refusing it.

Every outcome has two texts. ``reason`` is the operator's (the audit line): the token's
value and the relationship's. ``rule`` is the caller's (the refusal's description): which
rule refused and the token's own value, never what the relationship trusts, so that a
refusal does not teach any fork's author the policy (the repository to name, the pattern
to fit).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from issuer.builder.relationships import TrustRelationship, matches

MAX_VALUE = 1024


@dataclass(frozen=True)
class Outcome:
    allowed: bool
    reason: str
    """For the operator: may name what the relationship trusts."""
    rule: str = ""
    """For the caller: which rule refused, never the relationship's value. Defaults to
    ``reason`` for a check whose reason reveals nothing of the relationship."""

    def __post_init__(self) -> None:
        if not self.rule:
            object.__setattr__(self, "rule", self.reason)


class Check(Protocol):
    def check(self, claims: Mapping[str, Any]) -> Outcome: ...


def _value(claims: Mapping[str, Any], name: str) -> str | None:
    value = claims.get(name)
    return value if isinstance(value, str) and len(value) <= MAX_VALUE else None


@dataclass(frozen=True)
class IssuerIs:
    issuer: str

    def check(self, claims: Mapping[str, Any]) -> Outcome:
        if claims.get("iss") == self.issuer:
            return Outcome(True, f"issuer is {self.issuer}")
        return Outcome(False, f"issuer is not {self.issuer}", "issuer is not the trusted one")


@dataclass(frozen=True)
class RepositoryIs:
    repository: str

    def check(self, claims: Mapping[str, Any]) -> Outcome:
        value = _value(claims, "repository")
        if value == self.repository:
            return Outcome(True, f"repository is {self.repository}")
        return Outcome(
            False,
            f"repository {value!r} is not {self.repository}",
            f"repository {value!r} is not the trusted one",
        )


@dataclass(frozen=True)
class ClaimMatches:
    """A claim fully matches a pattern. The pattern itself is not repeated in a refusal, which
    the caller (any fork's author) sees; the operator has it in ``issuer trust list``."""

    name: str
    pattern: re.Pattern[str]

    def check(self, claims: Mapping[str, Any]) -> Outcome:
        value = _value(claims, self.name)
        if value is None:
            return Outcome(False, f"claim {self.name} is absent or not a short string")
        if matches(self.pattern, value):
            return Outcome(True, f"{self.name} {value!r} matches its pattern")
        return Outcome(False, f"{self.name} {value!r} does not match its pattern")


@dataclass(frozen=True)
class EventIn:
    events: tuple[str, ...]

    def check(self, claims: Mapping[str, Any]) -> Outcome:
        value = _value(claims, "event_name")
        if value is not None and value in self.events:
            return Outcome(True, f"event {value} is allowed")
        return Outcome(
            False,
            f"event {value!r} is not one of {', '.join(self.events)}",
            f"event {value!r} is not allowed",
        )


class AllOf:
    """Every check must allow; the outcome lists every refusal (or every reason to allow)."""

    def __init__(self, checks: Sequence[Check]) -> None:
        if not checks:
            raise ValueError("an empty policy would allow every token")
        self.checks = tuple(checks)

    def check(self, claims: Mapping[str, Any]) -> Outcome:
        outcomes = [check.check(claims) for check in self.checks]
        refused = [o for o in outcomes if not o.allowed]
        if refused:
            return Outcome(
                False, "; ".join(o.reason for o in refused), "; ".join(o.rule for o in refused)
            )
        return Outcome(True, "; ".join(o.reason for o in outcomes))


def policy_of(relationship: TrustRelationship) -> AllOf:
    checks: list[Check] = [IssuerIs(relationship.issuer)]
    if relationship.repository is not None:
        checks.append(RepositoryIs(relationship.repository))
    else:
        assert relationship.repository_pattern is not None
        pattern = relationship.compiled(relationship.repository_pattern)
        checks.append(ClaimMatches("repository", pattern))
    checks.append(EventIn(relationship.events))
    checks.extend(
        ClaimMatches(name, relationship.compiled(pattern)) for name, pattern in relationship.claims
    )
    return AllOf(checks)


@dataclass(frozen=True)
class Decision:
    relationship: TrustRelationship | None
    """The relationship that allows the token, or None."""
    reasons: tuple[str, ...]
    """Why it matched (one entry), or why each relationship did not (one entry each): the
    operator's text, for the audit line."""
    rules: tuple[str, ...] = ()
    """Which rule of each relationship refused: the caller's text, for the refusal."""

    @property
    def allowed(self) -> bool:
        return self.relationship is not None


def evaluate(relationships: Sequence[TrustRelationship], claims: Mapping[str, Any]) -> Decision:
    reasons: list[str] = []
    rules: list[str] = []
    for relationship in relationships:
        outcome = policy_of(relationship).check(claims)
        if outcome.allowed:
            return Decision(relationship, (f"{relationship.id}: {outcome.reason}",))
        reasons.append(f"{relationship.id}: {outcome.reason}")
        rules.append(f"{relationship.id}: {outcome.rule}")
    return Decision(None, tuple(reasons), tuple(rules))
