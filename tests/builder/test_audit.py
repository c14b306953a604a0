"""The audit trail: one JSON line and a metric per exchange and per builder start and stop,
never a secret."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import prometheus_client
import pytest
from prometheus_client import REGISTRY

from tests.builder.conftest import RunningService, exchange
from tests.builder.support import ADMIN_TOKEN, PROJECT, FakeIssuer, context

pytestmark = pytest.mark.usefixtures("trusted")


def audit_lines(caplog: pytest.LogCaptureFixture) -> list[dict[str, Any]]:
    return [
        json.loads(record.getMessage())
        for record in caplog.records
        if record.name == "issuer.builder.audit"
    ]


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def wait_for(condition: Any, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.05)


def test_a_granted_exchange_and_its_builders_life_are_audited_without_secrets(
    http: httpx.Client,
    builder_service: RunningService,
    fake_issuer: FakeIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    granted_before = sample("builder_exchanges_total", outcome="granted", reason="granted")
    stopped_before = sample("builder_builders_stopped_total", reason="released")
    token = fake_issuer.token(run_id="4242")
    body = exchange(http, builder_service, token).json()
    auth = {"Authorization": f"Bearer {body['access_token']}"}
    http.post(
        f"{body['builder']['endpoint']}/build",
        content=context({"Dockerfile": "FROM scratch\n"}),
        headers=auth,
    )
    http.delete(body["builder"]["endpoint"], headers=auth)
    builder_id = body["builder"]["id"]
    wait_for(
        lambda: any(
            line["event"] == "builder_stopped" and line["builder_id"] == builder_id
            for line in audit_lines(caplog)
        )
    )

    lines = [line for line in audit_lines(caplog) if line.get("builder_id") == builder_id]
    granted = next(line for line in lines if line["event"] == "exchange")
    assert granted["outcome"] == "granted"
    assert (granted["run_id"], granted["repository"]) == ("4242", "octo-org/octo-repo")
    assert granted["jti"] == json.loads(_payload(token))["jti"]
    assert granted["builder_id"] == body["builder"]["id"]
    started = next(line for line in lines if line["event"] == "builder_started")
    stopped = next(line for line in lines if line["event"] == "builder_stopped")
    assert started["builder_id"] == stopped["builder_id"] == body["builder"]["id"]
    assert stopped["reason"] == "released"
    assert (
        sample("builder_exchanges_total", outcome="granted", reason="granted") == granted_before + 1
    )
    assert sample("builder_builders_stopped_total", reason="released") == stopped_before + 1

    everything = caplog.text
    for secret in (token, body["access_token"], ADMIN_TOKEN, token.split(".")[2]):
        assert secret not in everything


def test_a_refused_exchange_is_audited_with_its_reason(
    http: httpx.Client,
    builder_service: RunningService,
    fake_issuer: FakeIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    before = sample("builder_exchanges_total", outcome="refused", reason="audience_mismatch")
    token = fake_issuer.token(aud="https://elsewhere.example")
    exchange(http, builder_service, token)
    (line,) = [line for line in audit_lines(caplog) if line["event"] == "exchange"]
    assert (line["outcome"], line["reason"], line["error"]) == (
        "refused",
        "audience_mismatch",
        "invalid_grant",
    )
    assert line["verified"] is False and "jti" not in line
    assert (
        sample("builder_exchanges_total", outcome="refused", reason="audience_mismatch")
        == before + 1
    )
    assert token not in caplog.text


def test_a_refusal_of_a_verified_token_names_its_run(
    http: httpx.Client,
    builder_service: RunningService,
    fake_issuer: FakeIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    exchange(http, builder_service, fake_issuer.token(repository="evil/repo", run_id="99"))
    (line,) = [line for line in audit_lines(caplog) if line["event"] == "exchange"]
    assert (line["reason"], line["run_id"], line["repository"]) == (
        "trust_denied",
        "99",
        "evil/repo",
    )


def test_the_audit_line_of_an_access_denied_keeps_what_the_relationship_trusts(
    http: httpx.Client,
    builder_service: RunningService,
    fake_issuer: FakeIssuer,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO")
    exchange(http, builder_service, fake_issuer.token(repository="evil/repo"))
    (line,) = [line for line in audit_lines(caplog) if line["event"] == "exchange"]
    assert f"repository 'evil/repo' is not {PROJECT}" in line["why"]
    assert PROJECT not in line["error_description"]


def test_a_malformed_request_is_audited_too(
    http: httpx.Client, builder_service: RunningService, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO")
    http.post(f"{builder_service.url}/token", json={"grant_type": "x"})
    (line,) = [line for line in audit_lines(caplog) if line["event"] == "exchange"]
    assert line["reason"] == "form_required"


def test_metrics_are_not_served_on_the_public_port(
    http: httpx.Client, builder_service: RunningService
) -> None:
    assert http.get(f"{builder_service.url}/metrics").status_code == 404
    assert "builder_exchanges_total" in prometheus_client.generate_latest().decode()


def _payload(token: str) -> bytes:
    import base64

    segment = token.split(".")[1]
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
