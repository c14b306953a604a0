"""The identity claims of a token must be what GitHub would sign: strings (ids of digits),
the ones the service needs present, and ``sub`` built from the repository and the event.
Each refusal is ``invalid_grant`` naming the claim."""

from __future__ import annotations

from typing import Any

import pytest

from issuer.builder import errors
from issuer.builder.identity import check_identity, expected_subject


def claims(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "sub": "repo:acme/widget:pull_request",
        "repository": "acme/widget",
        "repository_id": "101",
        "run_id": "1234",
        "run_attempt": "1",
        "event_name": "pull_request",
        "head_repository": "contributor/widget",
    }
    base.update(changes)
    return {name: value for name, value in base.items() if value is not None}


def refused(token_claims: dict[str, Any]) -> errors.Refused:
    with pytest.raises(errors.Refused) as caught:
        check_identity(token_claims)
    assert caught.value.code == "invalid_grant"
    return caught.value


def test_the_claims_github_signs_pass() -> None:
    check_identity(claims())


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("run_id", [1234]),
        ("repository_id", 101),
        ("run_attempt", 1),
        ("repository", {"full_name": "acme/widget"}),
        ("head_repository", ["contributor/widget"]),
        ("actor_id", 7),
        ("base_ref", True),
        ("sub", 5),
    ],
)
def test_an_identity_claim_that_is_not_a_string_is_refused_by_name(name: str, value: Any) -> None:
    error = refused(claims(**{name: value}))
    assert error.refusal is errors.CLAIM_INVALID
    assert error.description.endswith(f": {name} must be a string")


@pytest.mark.parametrize("name", ["sub", "repository", "event_name", "run_id", "run_attempt"])
def test_a_claim_the_service_needs_is_required(name: str) -> None:
    error = refused(claims(**{name: None}))
    assert error.refusal is errors.CLAIM_MISSING
    assert error.description.endswith(f": {name}")


@pytest.mark.parametrize("name", ["repository", "event_name"])
def test_a_needed_claim_may_not_be_empty(name: str) -> None:
    error = refused(claims(**{name: ""}))
    assert error.refusal is errors.CLAIM_INVALID
    assert name in error.description


@pytest.mark.parametrize(("name", "value"), [("run_id", "12 34"), ("repository_id", "-1")])
def test_an_id_that_is_not_digits_is_refused(name: str, value: str) -> None:
    error = refused(claims(**{name: value}))
    assert error.description.endswith(f": {name} must be a string of digits")


def test_a_sub_naming_another_repository_is_refused() -> None:
    error = refused(claims(sub="repo:evil/other:pull_request"))
    assert error.refusal is errors.SUBJECT_MISMATCH
    assert error.description.endswith("expected repo:acme/widget:pull_request")


def test_a_sub_naming_another_event_is_refused() -> None:
    assert refused(claims(sub="repo:acme/widget:ref:refs/heads/main")).refusal is (
        errors.SUBJECT_MISMATCH
    )


def test_a_sub_with_more_after_the_context_is_refused() -> None:
    error = refused(claims(sub="repo:acme/widget:pull_request:x"))
    assert error.refusal is errors.SUBJECT_MISMATCH


def test_the_sub_of_a_push_names_its_ref() -> None:
    push = claims(event_name="push", ref="refs/heads/main", sub=None)
    assert expected_subject(push) == "repo:acme/widget:ref:refs/heads/main"


def test_the_sub_of_a_job_with_an_environment_names_the_environment() -> None:
    job = claims(environment="production")
    assert expected_subject(job) == "repo:acme/widget:environment:production"


def test_a_push_token_without_a_ref_cannot_have_its_sub_checked() -> None:
    error = refused(claims(event_name="push", sub="repo:acme/widget:ref:refs/heads/main"))
    assert error.refusal is errors.CLAIM_MISSING
    assert "ref" in error.description


def test_claims_the_service_does_not_read_may_have_any_type() -> None:
    check_identity(claims(groups=["a", "b"], custom=3))
