"""Writing a trust relationship: strict validation, each refusal with its reason."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.builder.relationships import (
    InvalidRelationship,
    TrustRelationship,
    parse_relationship,
)

ISSUER = "https://issuer.example.com"


def parse(**fields: Any) -> TrustRelationship:
    raw: dict[str, Any] = {"project": "octo-org/octo-repo", "issuer": ISSUER}
    raw.update(fields)
    raw = {name: value for name, value in raw.items() if value is not None}
    return parse_relationship(raw, trusted_issuers=(ISSUER,))


def refused(**fields: Any) -> str:
    with pytest.raises(InvalidRelationship) as caught:
        parse(**fields)
    return str(caught.value)


def test_a_relationship_gets_an_id_and_the_documented_defaults() -> None:
    relationship = parse(repository="octo-org/octo-repo")
    assert relationship.id.startswith("tr_")
    assert relationship.events == ("pull_request",)
    assert (relationship.ttl, relationship.max_builders) == (600, 2)


def test_an_unknown_field_is_refused_by_name() -> None:
    assert "unknown field 'repositories'" in refused(repositories=["octo-org/octo-repo"])


def test_both_exact_repository_and_pattern_are_refused() -> None:
    reason = refused(repository="octo-org/octo-repo", repository_pattern="octo-org/.*")
    assert "exactly one of repository and repository_pattern" in reason


def test_neither_repository_nor_pattern_is_refused() -> None:
    assert "exactly one of repository and repository_pattern" in refused()


def test_an_uncompilable_pattern_is_refused_with_the_regex_error() -> None:
    assert "does not compile" in refused(repository_pattern="octo-org/(unclosed")


def test_a_global_flag_inside_the_pattern_is_refused() -> None:
    assert "does not compile" in refused(repository_pattern="(?i)octo-org/.*")


def test_a_pattern_matching_any_repository_constrains_nothing() -> None:
    assert "constrains nothing" in refused(repository_pattern=".*")


def test_an_alternation_of_anything_constrains_nothing() -> None:
    assert "constrains nothing" in refused(repository_pattern="octo-org/.*|.*")


def test_a_match_all_claim_pattern_does_not_make_it_constrain_something() -> None:
    reason = refused(repository_pattern=".*", claims={"repository_owner": ".*"})
    assert "constrains nothing" in reason


def test_a_narrowing_claim_makes_a_match_all_repository_pattern_acceptable() -> None:
    relationship = parse(repository_pattern=".*", claims={"repository_owner": "octo-org"})
    assert relationship.claims == (("repository_owner", "octo-org"),)


def test_an_issuer_that_is_not_trusted_is_refused() -> None:
    with pytest.raises(InvalidRelationship, match="not one of BUILDER_TRUSTED_ISSUERS"):
        parse_relationship(
            {"project": "p", "issuer": "https://other.example", "repository": "a/b"},
            trusted_issuers=(ISSUER,),
        )


def test_a_repository_that_is_not_owner_slash_repo_is_refused() -> None:
    assert "is not OWNER/REPO" in refused(repository="octo-org")


@pytest.mark.parametrize("claim", ["iss", "aud", "exp", "jti", "repository", "event_name"])
def test_claims_checked_elsewhere_cannot_be_constrained(claim: str) -> None:
    assert "cannot be constrained here" in refused(repository="a/b", claims={claim: "x"})


def test_an_empty_claim_pattern_is_refused() -> None:
    assert "needs a non-empty pattern" in refused(repository="a/b", claims={"actor": ""})


@pytest.mark.parametrize(
    ("field", "value", "reason"),
    [
        ("ttl", 10, "ttl must be between 60 and 3600"),
        ("ttl", "600", "ttl must be a whole number"),
        ("ttl", True, "ttl must be a whole number"),
        ("max_builders", 0, "max_builders must be between 1 and 100"),
        ("events", "pull_request", "events must be a non-empty list"),
        ("events", [], "events must be a non-empty list"),
        ("events", ["Pull Request"], "is not an event name"),
        ("project", "has space", "project must be"),
    ],
)
def test_malformed_values_are_refused(field: str, value: Any, reason: str) -> None:
    assert reason in refused(repository="a/b", **{field: value})


def test_a_relationship_that_is_not_a_mapping_is_refused() -> None:
    with pytest.raises(InvalidRelationship, match="must be a mapping"):
        parse_relationship(["project", "p"], trusted_issuers=(ISSUER,))


def test_a_stored_relationship_reads_back_unchanged() -> None:
    written = parse(repository_pattern="octo-org/.*", claims={"actor": "a|b"}, ttl=120)
    read = parse_relationship(written.as_json(), trusted_issuers=(ISSUER,), stored=True)
    assert read == written


def test_a_new_relationship_cannot_choose_its_id() -> None:
    assert "unknown field 'id'" in refused(repository="a/b", id="tr_mine")
