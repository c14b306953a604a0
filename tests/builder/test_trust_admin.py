"""The admin API for trust relationships: a bearer token, strict writes, all-or-none import."""

from __future__ import annotations

import httpx
import pytest

from issuer.builder.adminclient import AdminClient, AdminError
from tests.builder.conftest import RunningService, ServiceMaker
from tests.builder.support import ADMIN_TOKEN, FakeIssuer


def rel(issuer: FakeIssuer, **fields: object) -> dict[str, object]:
    base: dict[str, object] = {"project": "p/q", "issuer": issuer.url, "repository": "a/b"}
    base.update(fields)
    return base


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong-token-0123456789", f"Basic {ADMIN_TOKEN}"]
)
def test_the_admin_api_needs_the_admin_token(
    http: httpx.Client, builder_service: RunningService, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization else {}
    response = http.get(
        f"{builder_service.url}/admin/trust", params={"project": "p/q"}, headers=headers
    )
    assert response.status_code == 401
    assert response.json()["error"] == "invalid_token"
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert ADMIN_TOKEN not in response.text


def test_without_an_admin_token_configured_the_admin_api_is_off(
    http: httpx.Client, make_service: ServiceMaker
) -> None:
    service = make_service(admin_token=None)
    response = http.get(
        f"{service.url}/admin/trust",
        params={"project": "p/q"},
        headers={"Authorization": "Bearer anything-at-all-here"},
    )
    assert response.status_code == 404
    assert "BUILDER_ADMIN_TOKEN" in response.json()["error_description"]


def test_an_added_relationship_is_listed_and_removed(
    admin: AdminClient, fake_issuer: FakeIssuer
) -> None:
    added = admin.add(rel(fake_issuer, claims={"actor": "octocat"}, ttl=120))
    assert admin.list("p/q") == [added]
    admin.remove("p/q", added["id"])
    assert admin.list("p/q") == []


def test_removing_an_unknown_relationship_is_not_found(admin: AdminClient) -> None:
    with pytest.raises(AdminError) as caught:
        admin.remove("p/q", "tr_nothing")
    assert caught.value.status == 404


def test_an_invalid_relationship_is_refused_with_its_reason(
    admin: AdminClient, fake_issuer: FakeIssuer
) -> None:
    with pytest.raises(AdminError) as caught:
        admin.add(rel(fake_issuer, repository=None, repository_pattern="a|.*"))
    assert caught.value.status == 400
    assert "constrains nothing" in str(caught.value)


def test_an_import_with_one_bad_document_writes_nothing(
    admin: AdminClient, fake_issuer: FakeIssuer
) -> None:
    with pytest.raises(AdminError) as caught:
        admin.import_all([rel(fake_issuer), rel(fake_issuer, colour="blue")])
    assert "document 2: unknown field 'colour'" in str(caught.value)
    assert admin.list("p/q") == []


def test_an_import_writes_every_document(admin: AdminClient, fake_issuer: FakeIssuer) -> None:
    added = admin.import_all([rel(fake_issuer), rel(fake_issuer, project="x/y", repository="x/y")])
    assert [r["project"] for r in added] == ["p/q", "x/y"]
    assert len(admin.list("p/q")) == len(admin.list("x/y")) == 1


def test_listing_needs_a_project(http: httpx.Client, builder_service: RunningService) -> None:
    response = http.get(
        f"{builder_service.url}/admin/trust", headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
    )
    assert response.status_code == 400
    assert "project" in response.json()["error_description"]
