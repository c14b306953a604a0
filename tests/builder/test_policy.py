"""Evaluating trust relationships: anchored patterns, and a reason for every outcome."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.builder.policy import AllOf, evaluate
from issuer.builder.relationships import TrustRelationship, parse_relationship

ISSUER = "https://issuer.example.com"


def relationship(**fields: Any) -> TrustRelationship:
    raw: dict[str, Any] = {"project": "p", "issuer": ISSUER}
    raw.update(fields)
    return parse_relationship(raw, trusted_issuers=(ISSUER, "https://other.example"))


def token(**claims: Any) -> dict[str, Any]:
    base = {
        "iss": ISSUER,
        "repository": "octo-org/octo-repo",
        "event_name": "pull_request",
        "actor": "contributor",
    }
    base.update(claims)
    return base


def test_an_exact_repository_allows_its_token_and_says_why() -> None:
    decision = evaluate([relationship(repository="octo-org/octo-repo")], token())
    assert decision.allowed
    assert "repository is octo-org/octo-repo" in decision.reasons[0]


def test_an_alternation_does_not_match_a_longer_name() -> None:
    rel = relationship(repository_pattern="octo-org/a|octo-org/b")
    assert evaluate([rel], token(repository="octo-org/a")).allowed
    assert not evaluate([rel], token(repository="octo-org/a-evil")).allowed


def test_a_pattern_does_not_match_a_value_with_a_trailing_newline() -> None:
    rel = relationship(repository_pattern="octo-org/octo-repo")
    assert not evaluate([rel], token(repository="octo-org/octo-repo\n")).allowed


def test_a_pattern_does_not_match_a_prefix_of_the_value() -> None:
    rel = relationship(repository_pattern="octo-org/octo")
    assert not evaluate([rel], token()).allowed


def test_another_repository_is_refused_and_the_operator_learns_both_names() -> None:
    decision = evaluate([relationship(repository="octo-org/octo-repo")], token(repository="x/y"))
    assert not decision.allowed
    assert "repository 'x/y' is not octo-org/octo-repo" in decision.reasons[0]


def test_the_caller_learns_which_rule_refused_but_not_the_trusted_repository() -> None:
    decision = evaluate([relationship(repository="octo-org/octo-repo")], token(repository="x/y"))
    assert "repository 'x/y' is not the trusted one" in decision.rules[0]
    assert "octo-org/octo-repo" not in decision.rules[0]


def test_another_issuer_is_refused() -> None:
    rel = relationship(repository="octo-org/octo-repo", issuer="https://other.example")
    decision = evaluate([rel], token())
    assert "issuer is not https://other.example" in decision.reasons[0]
    assert "issuer is not the trusted one" in decision.rules[0]
    assert "other.example" not in decision.rules[0]


def test_an_event_not_allowed_is_refused() -> None:
    rel = relationship(repository="octo-org/octo-repo", events=["pull_request", "merge_group"])
    decision = evaluate([rel], token(event_name="push"))
    assert "event 'push' is not one of pull_request, merge_group" in decision.reasons[0]
    assert "event 'push' is not allowed" in decision.rules[0]
    assert "merge_group" not in decision.rules[0]


def test_a_repository_pattern_refusal_does_not_reveal_the_pattern() -> None:
    rel = relationship(repository_pattern="octo-org/secret-[0-9]+")
    decision = evaluate([rel], token())
    assert "repository 'octo-org/octo-repo' does not match its pattern" in decision.rules[0]
    assert "secret" not in decision.rules[0]


def test_a_claim_pattern_refusal_does_not_reveal_the_pattern() -> None:
    rel = relationship(repository="octo-org/octo-repo", claims={"actor": "trusted-[a-z]+"})
    decision = evaluate([rel], token())
    assert "actor 'contributor' does not match its pattern" in decision.rules[0]
    assert "trusted-" not in decision.rules[0]


def test_a_missing_claim_is_refused() -> None:
    rel = relationship(repository="octo-org/octo-repo", claims={"head_ref": "main"})
    assert "claim head_ref is absent" in evaluate([rel], token()).reasons[0]


def test_a_claim_that_is_not_a_string_never_matches() -> None:
    rel = relationship(repository="octo-org/octo-repo", claims={"run_attempt": "1"})
    assert not evaluate([rel], token(run_attempt=1)).allowed


def test_every_failed_check_of_a_relationship_is_named() -> None:
    decision = evaluate(
        [relationship(repository="octo-org/octo-repo")],
        token(repository="x/y", event_name="push"),
    )
    assert "repository 'x/y'" in decision.reasons[0] and "event 'push'" in decision.reasons[0]


def test_the_first_allowing_relationship_wins() -> None:
    refusing = relationship(repository="x/y")
    allowing = relationship(repository_pattern="octo-org/.*")
    also = relationship(repository="octo-org/octo-repo")
    decision = evaluate([refusing, allowing, also], token())
    assert decision.relationship is allowing


def test_each_refusing_relationship_gives_its_reason() -> None:
    first, second = relationship(repository="x/y"), relationship(repository="z/w")
    decision = evaluate([first, second], token())
    assert [r.split(":")[0] for r in decision.reasons] == [first.id, second.id]


def test_no_relationship_allows_nothing() -> None:
    assert not evaluate([], token()).allowed


def test_an_empty_policy_is_refused() -> None:
    with pytest.raises(ValueError, match="empty policy"):
        AllOf([])
