"""Bad input at the issuer gets a JSON error with the right status, never a 5xx."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.e2e.harness import ForkRun, bearer

VALID: dict[str, Any] = {
    "repository": "octo-org/octo-repo",
    "run_id": 1,
    "event_name": "pull_request",
}


def post_claim(http: httpx.Client, issuer_url: str, **kwargs: Any) -> httpx.Response:
    response = http.post(f"{issuer_url}/claim", **kwargs)
    assert response.status_code < 500
    return response


def assert_error(response: httpx.Response, status: int, code: str) -> None:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == code
    assert isinstance(body["error_description"], str) and body["error_description"]


def test_malformed_json_is_a_400(http: httpx.Client, issuer_url: str) -> None:
    response = post_claim(http, issuer_url, content=b'{"repository": ')
    assert_error(response, 400, "invalid_request")


def test_an_empty_body_is_a_400(http: httpx.Client, issuer_url: str) -> None:
    assert_error(post_claim(http, issuer_url, content=b""), 400, "invalid_request")


def test_a_body_that_is_not_an_object_is_a_400(http: httpx.Client, issuer_url: str) -> None:
    for body in ([], "x", 1, None):
        assert_error(post_claim(http, issuer_url, json=body), 400, "invalid_request")


def test_invalid_utf8_is_a_400(http: httpx.Client, issuer_url: str) -> None:
    assert_error(post_claim(http, issuer_url, content=b'{"a": "\xff"}'), 400, "invalid_request")


@pytest.mark.parametrize(
    "field, value",
    [
        ("repository", None),
        ("repository", 5),
        ("repository", "no-slash"),
        ("repository", "a/b/c"),
        ("repository", "-owner/repo"),
        ("repository", "owner/.."),
        ("repository", "owner/" + "r" * 101),
        ("run_id", None),
        ("run_id", 0),
        ("run_id", -4),
        ("run_id", 1.5),
        ("run_id", "12a"),
        ("run_id", True),
        ("run_id", 2**64),
        ("run_id", [1]),
        ("run_attempt", 0),
        ("run_attempt", "x"),
        ("event_name", None),
        ("event_name", 3),
        ("audience", 7),
    ],
)
def test_a_field_of_the_wrong_shape_is_a_400_naming_it(
    http: httpx.Client, issuer_url: str, field: str, value: Any
) -> None:
    body = dict(VALID)
    if value is None:
        body.pop(field, None)
        if field in ("repository", "run_id", "event_name"):
            response = post_claim(http, issuer_url, json=body)
            assert_error(response, 400, "invalid_request")
            assert field in response.json()["error_description"]
            return
    body[field] = value
    response = post_claim(http, issuer_url, json=body)
    assert_error(response, 400, "invalid_request")
    assert field in response.json()["error_description"]


@pytest.mark.parametrize("event", ["push", "pull_request_target", "workflow_dispatch", ""])
def test_events_other_than_pull_request_are_refused(
    http: httpx.Client, issuer_url: str, event: str
) -> None:
    response = post_claim(http, issuer_url, json={**VALID, "event_name": event})
    assert_error(response, 400, "invalid_request")
    assert "pull_request" in response.json()["error_description"]


def test_a_run_id_given_as_a_string_of_digits_is_accepted(
    http: httpx.Client, issuer_url: str
) -> None:
    response = post_claim(http, issuer_url, json={**VALID, "run_id": "1234567890"})
    assert response.status_code == 201


def test_a_body_over_16_kib_is_a_413(http: httpx.Client, issuer_url: str) -> None:
    body = b'{"pad": "' + b"x" * (16 * 1024) + b'"}'
    assert_error(post_claim(http, issuer_url, content=body), 413, "request_too_large")


def test_a_chunked_body_over_16_kib_is_a_413(http: httpx.Client, issuer_url: str) -> None:
    def chunks() -> Any:
        for _ in range(40):
            yield b"x" * 1024

    assert_error(post_claim(http, issuer_url, content=chunks()), 413, "request_too_large")


def test_an_exchange_wait_that_is_not_a_number_is_a_400(
    http: httpx.Client, issuer_url: str, pr: ForkRun
) -> None:
    claim = http.post(f"{issuer_url}/claim", json=pr.claim_body()).json()
    for wait in ("abc", "-1", "nan", "inf"):
        response = http.post(claim["exchange_url"], headers=bearer(claim), params={"wait": wait})
        assert_error(response, 400, "invalid_request")


def test_a_refused_claim_response_never_echoes_a_huge_value(
    http: httpx.Client, issuer_url: str
) -> None:
    response = post_claim(http, issuer_url, json={**VALID, "event_name": "e" * 5000})
    assert len(response.text) < 500


def test_an_exchange_with_a_body_over_16_kib_is_a_413(http: httpx.Client, issuer_url: str) -> None:
    response = http.post(f"{issuer_url}/exchange", content=b"x" * (17 * 1024))
    assert_error(response, 413, "request_too_large")
