"""Helpers of the builder tests: an OIDC issuer whose keys the test holds, tokens made with
them (or with an attacker's), and build contexts."""

from __future__ import annotations

import base64
import hashlib
import hmac
import io
import itertools
import json
import secrets
import tarfile
import time
from collections.abc import Callable
from typing import Any

from joserfc import jwt
from joserfc.jwk import ECKey, RSAKey
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from issuer.web.serving import BackgroundServer, bound_socket

AUDIENCE = "https://builder.example"
PROJECT = "octo-org/octo-repo"
ADMIN_TOKEN = "admin-" + "k" * 32


_POOL: list[RSAKey] = []
_next_key = itertools.count()


def pooled_rsa_key() -> RSAKey:
    """One of a few RSA keys made once per session (key generation is slow); consecutive
    calls never return the same key."""
    index = next(_next_key) % 4
    while len(_POOL) <= index:
        _POOL.append(RSAKey.generate_key(2048, private=True))
    return _POOL[index]


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class FakeIssuer:
    """An OIDC issuer on a loopback socket: discovery and JWKS of keys the test holds, and a
    record of every request it was sent."""

    def __init__(self, keys: list[RSAKey | ECKey] | None = None) -> None:
        self.keys: list[RSAKey | ECKey] = keys or [pooled_rsa_key()]
        self.requests: list[str] = []
        self.discovery_issuer: str | None = None  # set to lie about the issuer
        self.jwks_headers: dict[str, str] = {}  # Cache-Control, Age: as the test sets them
        sock = bound_socket()
        self.url = "http://{}:{}".format(*sock.getsockname()[:2])
        app = Starlette(
            routes=[
                Route("/.well-known/openid-configuration", self._discovery),
                Route("/.well-known/jwks", self._jwks),
                Route("/{path:path}", self._other),
            ]
        )
        self.server = BackgroundServer(app, [sock]).start()

    def reset(self) -> FakeIssuer:
        """Back to its first key, no lies, no requests seen (one server serves many tests)."""
        del self.keys[1:]
        self.requests.clear()
        self.discovery_issuer = None
        self.jwks_headers = {}
        return self

    @property
    def key(self) -> RSAKey | ECKey:
        return self.keys[0]

    def kid(self, key: RSAKey | ECKey | None = None) -> str:
        return (key or self.key).thumbprint()

    def count(self, path: str) -> int:
        return sum(1 for seen in self.requests if seen == path)

    async def _discovery(self, request: Request) -> Response:
        self.requests.append(request.url.path)
        return JSONResponse(
            {
                "issuer": self.discovery_issuer or self.url,
                "jwks_uri": f"{self.url}/.well-known/jwks",
                "id_token_signing_alg_values_supported": ["RS256", "ES256"],
            }
        )

    async def _jwks(self, request: Request) -> Response:
        self.requests.append(request.url.path)
        keys = []
        for key in self.keys:
            jwk = dict(key.as_dict(private=False))
            jwk.update(kid=self.kid(key), use="sig")
            keys.append(jwk)
        return JSONResponse({"keys": keys}, headers=self.jwks_headers)

    async def _other(self, request: Request) -> Response:
        self.requests.append(request.url.path)
        return JSONResponse({"error": "not_found"}, status_code=404)

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.url,
            "aud": AUDIENCE,
            "sub": f"repo:{PROJECT}:pull_request",
            "iat": now,
            "nbf": now,
            "exp": now + 300,
            "jti": secrets.token_urlsafe(16),
            "repository": PROJECT,
            "repository_owner": "octo-org",
            "run_id": "1234",
            "run_attempt": "1",
            "event_name": "pull_request",
            "head_repository": "contributor/octo-repo",
            "actor": "contributor",
        }
        claims.update(overrides)
        if "sub" not in overrides and isinstance(claims["repository"], str):
            claims["sub"] = f"repo:{claims['repository']}:pull_request"  # as GitHub builds it
        return {name: value for name, value in claims.items() if value is not None}

    def token(
        self,
        *,
        key: RSAKey | ECKey | None = None,
        header: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token signed with ``key`` (default: the issuer's own), kid of that key unless the
        header says otherwise."""
        signing = key or self.key
        alg = "ES256" if isinstance(signing, ECKey) else "RS256"
        full_header: dict[str, Any] = {"alg": alg, "kid": self.kid(signing), "typ": "JWT"}
        full_header.update(header or {})
        full_header = {k: v for k, v in full_header.items() if v is not None}
        return jwt.encode(full_header, self.claims(**claims), signing)

    def stop(self) -> None:
        self.server.stop()


def unsigned(header: dict[str, Any], claims: dict[str, Any], signature: bytes = b"") -> str:
    """A compact JWS with any header and signature bytes (for ``alg: none`` and friends)."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    return f"{head}.{body}.{b64(signature)}"


def hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    """HS256 signed with ``secret``: the key-confusion attack uses the public key's PEM."""
    head = b64(json.dumps(header).encode())
    body = b64(json.dumps(claims).encode())
    mac = hmac.new(secret, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(mac)}"


def context(
    files: dict[str, str | bytes], *, extra: Callable[[tarfile.TarFile], None] | None = None
) -> bytes:
    """A ``.tar.gz`` build context holding ``files``."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o755
            tar.addfile(info, io.BytesIO(data))
        if extra is not None:
            extra(tar)
    return buffer.getvalue()


def signed(key: RSAKey | ECKey, header: dict[str, Any], claims: dict[str, Any]) -> str:
    """An RS256 JWS over any header, signed without a JOSE library's checks (a ``crit`` it
    does not know, a header longer than it allows): what an issuer, honest or not, could send."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding, rsa

    private = key.private_key
    assert isinstance(private, rsa.RSAPrivateKey)
    signing_input = f"{b64(json.dumps(header).encode())}.{b64(json.dumps(claims).encode())}"
    signature = private.sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
    return f"{signing_input}.{b64(signature)}"


def certificate_chain(key: RSAKey) -> list[str]:
    """An ``x5c`` value: a self-signed certificate of ``key``, base64 DER."""
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    private = key.private_key
    assert isinstance(private, rsa.RSAPrivateKey)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "attacker")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(private.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(private, hashes.SHA256())
    )
    der = certificate.public_bytes(serialization.Encoding.DER)
    return [base64.b64encode(der).decode()]


def file_in_layers(manifest: dict[str, Any], blob: Callable[[str], bytes], name: str) -> bytes:
    """A file of an image as a container would see it: the top layer that holds ``name``
    (``blob`` reads a layer by its digest, from a registry or an OCI archive)."""
    for layer in reversed(manifest["layers"]):
        with tarfile.open(fileobj=io.BytesIO(blob(layer["digest"]))) as files:
            for member in files.getmembers():
                if member.name.lstrip("./") == name and member.isfile():
                    content = files.extractfile(member)
                    assert content is not None
                    return content.read()
    raise AssertionError(f"{name} is in no layer of the image")
