"""Who may call the API: personal tokens, GitHub Apps and the installation tokens they mint."""

from __future__ import annotations

import json
import secrets
import string
from dataclasses import dataclass

from joserfc import jws, jwt
from joserfc.errors import JoseError
from joserfc.jwk import RSAKey

INSTALLATION_TOKEN_SECONDS = 3600
_MAX_JWT_SECONDS = 600
_ALPHABET = string.ascii_letters + string.digits


@dataclass(frozen=True)
class Credential:
    """A token the API accepts, and the rate-limit bucket its requests count against."""

    token: str
    bucket: str
    limit: int
    limit_subject: str  # "user ID 123" / "installation ID 456", as in GitHub's limit message
    sees_private: bool = False
    not_before: float = 0.0
    expires_at: float | None = None


@dataclass(frozen=True)
class SimApp:
    app_id: int
    key: RSAKey
    installation_id: int
    limit: int
    sees_private: bool


class AppAuthError(Exception):
    """An App JWT GitHub would refuse; the message is GitHub's."""


class Credentials:
    def __init__(self) -> None:
        self._tokens: dict[str, Credential] = {}
        self._apps: dict[int, SimApp] = {}

    def add_token(self, token: str, *, limit: int, user_id: int, sees_private: bool) -> None:
        # Named by the user, not the token: bucket names show up in reports and control answers.
        self._tokens[token] = Credential(
            token, f"user:{user_id}", limit, f"user ID {user_id}", sees_private
        )

    def add_app(self, app: SimApp) -> None:
        self._apps[app.app_id] = app

    def first_app(self) -> SimApp | None:
        """The App added first, if any."""
        return next(iter(self._apps.values()), None)

    def lookup(self, token: str, now: float) -> Credential | None:
        credential = self._tokens.get(token)
        if credential is None or now < credential.not_before:
            return None
        if credential.expires_at is not None and now >= credential.expires_at:
            return None
        return credential

    def revoke(self, token: str) -> None:
        self._tokens.pop(token, None)

    def installation_tokens(self, installation_id: int) -> list[str]:
        bucket = f"installation:{installation_id}"
        return [t for t, c in self._tokens.items() if c.bucket == bucket]

    def bucket_of(self, token: str | None) -> str:
        if token is None:
            return "anonymous"
        credential = self._tokens.get(token)
        return credential.bucket if credential else "unknown-token"

    def verify_app_jwt(self, value: str, now: float) -> SimApp:
        """The App whose key signed `value`, checked as GitHub checks it."""
        claims = _claims_of(value)
        issuer = claims.get("iss")
        if isinstance(issuer, str) and issuer.isdigit():
            issuer = int(issuer)
        if not isinstance(issuer, int) or isinstance(issuer, bool):
            raise AppAuthError("'Issuer' claim ('iss') must be an Integer")
        app = self._apps.get(issuer)
        if app is None:
            raise AppAuthError("Integration not found")
        try:
            jwt.decode(value, app.key, algorithms=["RS256"])
        except (JoseError, ValueError) as exc:
            raise AppAuthError("A JSON web token could not be decoded") from exc
        issued, expires = _number(claims.get("iat")), _number(claims.get("exp"))
        if issued is None or issued > now:
            raise AppAuthError(
                "'Issued at' claim ('iat') must be an Integer representing the time "
                "that the assertion was issued."
            )
        if expires is None or expires <= now:
            raise AppAuthError(
                "'Expiration time' claim ('exp') must be a numeric value representing the "
                "future time at which the assertion expires."
            )
        if expires > issued + _MAX_JWT_SECONDS:
            raise AppAuthError("'Expiration time' claim ('exp') is too far in the future.")
        return app

    def issue_installation_token(self, app: SimApp, now: float, delay: float) -> Credential:
        token = "ghs_" + "".join(secrets.choice(_ALPHABET) for _ in range(36))
        credential = Credential(
            token=token,
            bucket=f"installation:{app.installation_id}",
            limit=app.limit,
            limit_subject=f"installation ID {app.installation_id}",
            sees_private=app.sees_private,
            not_before=now + delay,
            expires_at=now + INSTALLATION_TOKEN_SECONDS,
        )
        self._tokens[token] = credential
        return credential


def _number(value: object) -> float | None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    return None


def _claims_of(value: str) -> dict[str, object]:
    """The unverified claims: GitHub needs `iss` to know which key to verify with."""
    try:
        payload = json.loads(jws.extract_compact(value.encode()).payload)
    except (JoseError, ValueError, UnicodeError) as exc:
        raise AppAuthError("A JSON web token could not be decoded") from exc
    if not isinstance(payload, dict):
        raise AppAuthError("A JSON web token could not be decoded")
    return payload


def import_app_key(pem: str) -> RSAKey:
    return RSAKey.import_key(pem)
