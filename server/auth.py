"""Who is calling: a bearer token turned into an Identity, by the configured authenticator.

- `tokens`: the static map of SLURM_GRAPHQL_TOKENS;
- `jwt`: OIDC tokens (Cognito or any issuer) verified against the issuer's JWKS: signature with
  an allowed asymmetric algorithm only (no `none`, no HMAC, so no HS/RS confusion), issuer,
  audience (or a Cognito access token's `client_id`), expiry and not-before; the POSIX user
  comes from a configurable claim and the admin role from a group claim.
Keys are fetched from the JWKS URL and cached (PyJWKClient); an unknown `kid` refetches once.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import jwt

from resolvers.identity import Identity, InvalidUserName
from server.tokens import identity_for_token

ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"})


class Authenticator(Protocol):
    async def identity(self, token: str) -> Identity | None:
        """The caller's identity for a bearer token; None if the token is not acceptable."""
        ...


class TokenAuthenticator:
    def __init__(self, tokens: Mapping[str, Identity]) -> None:
        self._tokens = tokens

    async def identity(self, token: str) -> Identity | None:
        return identity_for_token(self._tokens, token)


@dataclass(frozen=True)
class JwtSettings:
    issuer: str
    jwks_url: str
    audience: str | None = None
    algorithms: tuple[str, ...] = ("RS256", "ES256")
    user_claim: str = "username"
    groups_claim: str = "cognito:groups"
    admin_group: str | None = None
    leeway_seconds: float = 0.0


class JwtAuthenticator:
    def __init__(self, settings: JwtSettings) -> None:
        unsafe = set(settings.algorithms) - ASYMMETRIC
        if unsafe:
            raise ValueError(f"algorithms not allowed for JWTs: {sorted(unsafe)}")
        self._settings = settings
        self._keys = jwt.PyJWKClient(settings.jwks_url, cache_keys=True, lifespan=300, timeout=5)

    async def identity(self, token: str) -> Identity | None:
        # PyJWKClient fetches keys with blocking urllib: keep it off the event loop.
        return await asyncio.to_thread(self._verify, token)

    def _verify(self, token: str) -> Identity | None:
        settings = self._settings
        try:
            if jwt.get_unverified_header(token).get("alg") not in settings.algorithms:
                return None
            key = self._keys.get_signing_key_from_jwt(token)
            claims: dict[str, Any] = jwt.decode(
                token,
                key.key,
                algorithms=list(settings.algorithms),
                issuer=settings.issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp", "iss"], "verify_aud": False},
            )
        except (jwt.PyJWTError, ValueError):
            return None
        if settings.audience is not None and not _for_audience(claims, settings.audience):
            return None
        user = _user(claims.get(settings.user_claim), settings.user_claim)
        if user is None:
            return None
        groups = claims.get(settings.groups_claim) or ()
        admin = settings.admin_group is not None and settings.admin_group in groups
        try:
            return Identity(user=user, admin=admin)
        except InvalidUserName:
            return None


def _for_audience(claims: Mapping[str, Any], audience: str) -> bool:
    """ID tokens name their audience in `aud`; Cognito access tokens in `client_id`."""
    aud = claims.get("aud")
    if aud is not None:
        return audience in ([aud] if isinstance(aud, str) else list(aud))
    return claims.get("client_id") == audience


def _user(value: object, claim: str) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    # An e-mail address maps to its local part (alice@example.org acts as alice).
    return value.split("@", 1)[0] if claim == "email" else value
