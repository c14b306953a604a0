"""Discovery and JWKS: prepared bytes, cache headers, ETags, and valid provider metadata."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator

import pytest
from authlib.oidc.discovery import OpenIDProviderMetadata

from issuer.oidc.app import create_app
from issuer.oidc.config import IssuerConfig
from issuer.oidc.discovery import publish
from issuer.oidc.keys import KeyPolicy, Keyring
from issuer.oidc.service import IssuerService
from issuer.store import MemoryStore

with warnings.catch_warnings():  # starlette asks for httpx2 here; httpx is what is installed
    warnings.simplefilter("ignore")
    from starlette.testclient import TestClient

ISSUER = "https://issuer.example"
PATHS = ["/.well-known/openid-configuration", "/.well-known/jwks"]


class IssuerMetadata(OpenIDProviderMetadata):
    """authlib's checks, less the two endpoints an OAuth authorization server needs.

    This issuer hands out tokens from ``/exchange`` only, as GitHub Actions' issuer does: it
    has no authorization or token endpoint, and its document says none. Both must stay absent
    rather than point somewhere that does not answer."""

    def validate_authorization_endpoint(self) -> None:
        assert "authorization_endpoint" not in self

    def validate_token_endpoint(self) -> None:
        assert "token_endpoint" not in self


@pytest.fixture
def client() -> Iterator[TestClient]:
    config = IssuerConfig(issuer_url=ISSUER)
    app = create_app(lambda: IssuerService.start(config, store=MemoryStore()))
    with TestClient(app) as test_client:
        yield test_client


async def test_the_discovery_document_is_valid_openid_provider_metadata() -> None:
    keyring = await Keyring.load_or_create(MemoryStore(), os.urandom(32))
    metadata = IssuerMetadata(json.loads(publish(ISSUER, keyring).discovery.body))
    metadata.validate()
    assert metadata["jwks_uri"] == f"{ISSUER}/.well-known/jwks"


async def test_an_es256_keyring_still_lists_rs256_as_openid_connect_requires() -> None:
    keyring = await Keyring.load_or_create(MemoryStore(), os.urandom(32), KeyPolicy(alg="ES256"))
    metadata = IssuerMetadata(json.loads(publish(ISSUER, keyring).discovery.body))
    metadata.validate()
    assert metadata["id_token_signing_alg_values_supported"] == ["ES256", "RS256"]


@pytest.mark.parametrize("path", PATHS)
def test_a_document_is_cacheable_publicly_for_the_jwks_lifetime(
    client: TestClient, path: str
) -> None:
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["cache-control"] == "public, max-age=300"


@pytest.mark.parametrize("path", PATHS)
def test_a_document_carries_a_strong_etag(client: TestClient, path: str) -> None:
    etag = client.get(path).headers["etag"]
    assert etag.startswith('"') and etag.endswith('"')
    assert not etag.startswith("W/")


@pytest.mark.parametrize("path", PATHS)
def test_a_matching_if_none_match_gets_304_without_a_body(client: TestClient, path: str) -> None:
    etag = client.get(path).headers["etag"]
    response = client.get(path, headers={"If-None-Match": etag})
    assert response.status_code == 304
    assert response.content == b""
    assert response.headers["etag"] == etag


@pytest.mark.parametrize("path", PATHS)
def test_a_weak_or_listed_if_none_match_also_matches(client: TestClient, path: str) -> None:
    etag = client.get(path).headers["etag"]
    headers = {"If-None-Match": f'"other", W/{etag}'}
    assert client.get(path, headers=headers).status_code == 304


@pytest.mark.parametrize("path", PATHS)
def test_a_stale_if_none_match_gets_the_document(client: TestClient, path: str) -> None:
    response = client.get(path, headers={"If-None-Match": '"stale"'})
    assert response.status_code == 200
    assert response.content


def test_the_served_jwks_is_the_prepared_bytes(client: TestClient) -> None:
    service: IssuerService = client.app.state.service  # type: ignore[attr-defined]
    assert client.get("/.well-known/jwks").content == service.published.jwks.body
    assert client.get("/.well-known/jwks").headers["content-type"] == "application/jwk-set+json"


def test_a_rotation_changes_the_jwks_and_its_etag_at_the_next_refresh(client: TestClient) -> None:
    service: IssuerService = client.app.state.service  # type: ignore[attr-defined]
    before = client.get("/.well-known/jwks")
    upcoming = client.portal.call(service.keys.rotate)  # type: ignore[union-attr]
    client.portal.call(service.refresh_keys)  # type: ignore[union-attr]
    after = client.get("/.well-known/jwks", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200
    assert after.headers["etag"] != before.headers["etag"]
    assert upcoming in [key["kid"] for key in after.json()["keys"]]


def test_the_jwks_shows_no_private_key_member(client: TestClient) -> None:
    for key in client.get("/.well-known/jwks").json()["keys"]:
        assert not {"d", "p", "q", "dp", "dq", "qi"} & set(key)
