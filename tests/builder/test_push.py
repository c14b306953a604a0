"""Pushing built images: only where the trust relationship's ``push`` names, under a tag
made from the token, with credentials the service holds (a registry that asks for them, as
registries do), the manifest's digest the same in the registry as in the stream."""

from __future__ import annotations

import base64
import json
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from issuer.builder.adminclient import AdminClient, AdminError
from issuer.builder.localregistry import LocalRegistry
from tests.builder.conftest import RunningService, ServiceMaker, exchange
from tests.builder.support import ADMIN_TOKEN, PROJECT, FakeIssuer, context
from tests.image_registry import ImageRegistry

USER, PASSWORD = "pusher", "push-" + "x" * 20
HEAD_SHA = "0123456789abcdef0123456789abcdef01234567"


def _bcrypt(password: str) -> str:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        import crypt  # the registry's htpasswd wants bcrypt; glibc's crypt(3) makes it

    return crypt.crypt(password, crypt.mksalt(crypt.METHOD_BLOWFISH))  # noqa: S324  (bcrypt)


@pytest.fixture(scope="module")
def guarded_registry() -> Iterator[LocalRegistry]:
    """A registry that takes pushes only with HTTP Basic credentials."""
    with LocalRegistry(htpasswd=f"{USER}:{_bcrypt(PASSWORD)}\n") as registry:
        yield registry


@pytest.fixture
def auth_file(tmp_path: Path, guarded_registry: LocalRegistry) -> Path:
    path = tmp_path / "registry-auth.json"
    token = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
    path.write_text(json.dumps({"auths": {guarded_registry.host: {"auth": token}}}))
    return path


def _service(
    make_service: ServiceMaker,
    issuer: FakeIssuer,
    images: ImageRegistry,
    guarded: LocalRegistry,
    **changes: Any,
) -> RunningService:
    service = make_service(insecure_registries=(images.host, guarded.host), **changes)
    with AdminClient(service.url, ADMIN_TOKEN) as admin:
        admin.add(
            {
                "project": PROJECT,
                "issuer": issuer.url,
                "repository": PROJECT,
                "push": f"{guarded.host}/acme/widget",
            }
        )
    return service


def _build(service: RunningService, token: str, dockerfile: str, **params: str) -> dict[str, Any]:
    with httpx.Client(timeout=120) as http:
        granted = exchange(http, service, token)
        assert granted.status_code == 200, granted.text
        body = granted.json()
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        endpoint = body["builder"]["endpoint"]
        answer = http.post(
            f"{endpoint}/build",
            content=context({"Dockerfile": dockerfile}),
            headers=auth,
            params=params,
        )
        http.delete(endpoint, headers=auth)
    lines = [json.loads(line) for line in answer.text.splitlines() if line.strip()]
    last: dict[str, Any] = lines[-1]
    return last


def _stored_digest(registry: LocalRegistry, tag: str) -> str | None:
    response = httpx.head(
        f"http://{registry.host}/v2/acme/widget/manifests/{tag}",
        headers={"Accept": "application/vnd.oci.image.manifest.v1+json"},
        auth=(USER, PASSWORD),
    )
    return response.headers.get("docker-content-digest") if response.status_code == 200 else None


def test_an_image_is_pushed_with_the_services_credentials_tagged_from_the_pull_request(
    make_service: ServiceMaker,
    fake_issuer: FakeIssuer,
    image_registry: ImageRegistry,
    guarded_registry: LocalRegistry,
    auth_file: Path,
) -> None:
    service = _service(
        make_service, fake_issuer, image_registry, guarded_registry, registry_auth_file=auth_file
    )
    token = fake_issuer.token(pull_request_number="17", head_sha=HEAD_SHA)
    last = _build(service, token, f"FROM {image_registry.base}\nRUN echo pushed > /pushed\n")
    aux = last["aux"]
    tag = "pr-17-0123456789ab"
    assert aux["pushed"] == f"{guarded_registry.host}/acme/widget:{tag}@{aux['digest']}"
    assert _stored_digest(guarded_registry, tag) == aux["digest"]


def test_without_a_pull_request_number_the_tag_is_the_runs(
    make_service: ServiceMaker,
    fake_issuer: FakeIssuer,
    image_registry: ImageRegistry,
    guarded_registry: LocalRegistry,
    auth_file: Path,
) -> None:
    service = _service(
        make_service, fake_issuer, image_registry, guarded_registry, registry_auth_file=auth_file
    )
    token = fake_issuer.token(run_id="555", run_attempt="2")
    last = _build(
        service,
        token,
        f"FROM {image_registry.base}\nLABEL tag=chosen-by-the-build\n",
        labels=json.dumps({"tag": "latest"}),
    )
    assert last["aux"]["pushed"].startswith(f"{guarded_registry.host}/acme/widget:run-555-2@")
    assert _stored_digest(guarded_registry, "latest") is None


def test_a_registry_asking_for_credentials_the_service_lacks_fails_the_build(
    make_service: ServiceMaker,
    fake_issuer: FakeIssuer,
    image_registry: ImageRegistry,
    guarded_registry: LocalRegistry,
) -> None:
    service = _service(make_service, fake_issuer, image_registry, guarded_registry)
    last = _build(service, fake_issuer.token(), f"FROM {image_registry.base}\n")
    assert "error" in last
    assert "asks for credentials and none are configured" in last["error"]


def test_no_credential_appears_in_the_build_stream(
    make_service: ServiceMaker,
    fake_issuer: FakeIssuer,
    image_registry: ImageRegistry,
    guarded_registry: LocalRegistry,
    auth_file: Path,
) -> None:
    service = _service(
        make_service, fake_issuer, image_registry, guarded_registry, registry_auth_file=auth_file
    )
    with httpx.Client(timeout=120) as http:
        body = exchange(http, service, fake_issuer.token()).json()
        auth = {"Authorization": f"Bearer {body['access_token']}"}
        answer = http.post(
            f"{body['builder']['endpoint']}/build",
            content=context({"Dockerfile": f"FROM {image_registry.base}\nRUN env; ls -la /\n"}),
            headers=auth,
        )
    assert PASSWORD not in answer.text
    assert base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode() not in answer.text


@pytest.mark.parametrize("push", ["acme/widget", "https://registry.example/acme", "reg.example/UP"])
def test_a_push_that_names_no_registry_repository_is_refused(
    builder_service: RunningService, fake_issuer: FakeIssuer, push: str
) -> None:
    with AdminClient(builder_service.url, ADMIN_TOKEN) as admin, pytest.raises(AdminError):
        admin.add(
            {"project": PROJECT, "issuer": fake_issuer.url, "repository": PROJECT, "push": push}
        )
