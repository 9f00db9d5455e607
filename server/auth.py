"""Who is calling: a bearer token turned into an Identity, by the configured authenticator.

- `tokens`: the static map of SLURM_GRAPHQL_TOKENS (or _TOKENS_FILE), kept as digests;
- `jwt`: OIDC tokens (Cognito or any issuer) verified against the issuer's JWKS: signature with
  an allowed asymmetric algorithm only (no `none`, no HMAC, so no HS/RS confusion), issuer,
  audience (or a Cognito access token's `client_id`), expiry and not-before; the POSIX user
  comes from a configurable claim and the admin role from a group claim.
Keys are fetched from the JWKS URL and cached (PyJWKClient); an unknown `kid` refetches once.

An authenticator answers an Identity, None (the token proves nothing: 401), or raises
IdentityRefused when verified claims name someone the service must not act as (an e-mail
address outside SLURM_GRAPHQL_JWT_EMAIL_DOMAINS), or CredentialExpired for a genuine token past
its expiry (401 as well, but not a failed guess: server/auth_failures.py). The identity floor
(server/floor.py) is applied to every answer by the caller, in one place.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

import jwt

from resolvers.identity import Identity, InvalidUserName
from server.floor import IdentityRefused
from server.tokens import TokenMap
from slurm_graphql.errors import SlurmGraphQLError

ASYMMETRIC = frozenset({"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384"})


class CredentialExpired(SlurmGraphQLError):
    """A token its issuer did sign, past its expiry: it proves nothing now, but it is not a
    guess either (nobody can forge one), so it does not count as a failed authentication."""


class Authenticator(Protocol):
    async def identity(self, token: str) -> Identity | None:
        """The caller's identity for a bearer token; None if the token is not acceptable."""
        ...


class TokenAuthenticator:
    def __init__(self, tokens: TokenMap) -> None:
        self._tokens = tokens

    async def identity(self, token: str) -> Identity | None:
        return self._tokens.identity(token)


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
    user_map: Mapping[str, str] = field(default_factory=dict)
    # With user_claim "email": the domains whose addresses map to their local part.
    email_domains: frozenset[str] = frozenset()


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
        except jwt.ExpiredSignatureError:
            # Raised only once the signature has verified (PyJWT checks claims after it).
            raise CredentialExpired from None
        except (jwt.PyJWTError, ValueError):
            return None
        if settings.audience is not None and not _for_audience(claims, settings.audience):
            return None
        identity = identity_from_claims(
            claims,
            settings.user_claim,
            settings.groups_claim,
            settings.admin_group,
            settings.user_map,
            settings.email_domains,
        )
        if identity is None:
            return None
        # `exp` is required and was checked, with the leeway: the token proves this identity
        # until then, and a WebSocket or SSE stream it opened ends at that moment.
        return replace(identity, expires_at=float(claims["exp"]) + settings.leeway_seconds)


def identity_from_claims(
    claims: Mapping[str, Any],
    user_claim: str,
    groups_claim: str,
    admin_group: str | None,
    user_map: Mapping[str, str] | None = None,
    email_domains: frozenset[str] = frozenset(),
) -> Identity | None:
    """The identity verified claims describe: the user from `user_claim` (through the explicit
    map when it names the claim's value; validated as a POSIX name), admin when `admin_group` is
    among the groups. Raises IdentityRefused for an e-mail outside `email_domains`."""
    value = claims.get(user_claim)
    verified = claims.get("email_verified")
    # `is True`: 1 == True in Python, and a claim of 1 is not the boolean the OIDC spec defines.
    if user_claim == "email" and not (verified is True or verified == "true"):
        # Identity providers let users change their own address (Cognito by default), and an
        # unverified one may be anyone's: bob setting his to alice@example.org is not alice.
        raise IdentityRefused(str(value)[:80], "the e-mail address is not verified")
    mapped = user_map.get(value) if user_map and isinstance(value, str) else None
    user = mapped or _user(value, user_claim, email_domains)
    if user is None:
        return None
    admin = admin_group is not None and admin_group in _groups(claims.get(groups_claim))
    try:
        return Identity(user=user, admin=admin)
    except InvalidUserName:
        return None


def _groups(value: object) -> list[str]:
    """Groups as a list: API Gateway passes claims as strings, arrays flattened to "[a b]"."""
    if isinstance(value, str):
        return [g for g in value.strip("[]").replace(",", " ").split() if g]
    if isinstance(value, list | tuple):
        return [str(g) for g in value]
    return []


@dataclass(frozen=True)
class ClaimMapping:
    user_claim: str = "username"
    groups_claim: str = "cognito:groups"
    admin_group: str | None = None
    user_map: Mapping[str, str] = field(default_factory=dict)
    email_domains: frozenset[str] = frozenset()


class ApiGatewayAuthenticator:
    """SLURM_GRAPHQL_AUTH=apigateway: API Gateway's authorizer (JWT or Cognito) has verified
    the caller; its claims arrive in the Lambda event, which only the Lambda handler sees."""

    def __init__(self, mapping: ClaimMapping) -> None:
        self._mapping = mapping

    async def identity(self, token: str) -> Identity | None:
        return None  # a bearer token alone proves nothing here: the event's claims do

    def identity_for_event(self, event: object) -> Identity | None:
        if not isinstance(event, Mapping):
            return None
        context = event.get("requestContext")
        authorizer = context.get("authorizer") if isinstance(context, Mapping) else None
        if not isinstance(authorizer, Mapping):
            return None
        jwt_part = authorizer.get("jwt")
        claims = (
            jwt_part.get("claims") if isinstance(jwt_part, Mapping) else None
        ) or authorizer.get("claims")
        if not isinstance(claims, Mapping):
            return None
        mapping = self._mapping
        return identity_from_claims(
            claims,
            mapping.user_claim,
            mapping.groups_claim,
            mapping.admin_group,
            mapping.user_map,
            mapping.email_domains,
        )


def _for_audience(claims: Mapping[str, Any], audience: str) -> bool:
    """ID tokens name their audience in `aud`; Cognito access tokens in `client_id`."""
    aud = claims.get("aud")
    if aud is not None:
        return audience in ([aud] if isinstance(aud, str) else list(aud))
    return claims.get("client_id") == audience


def _user(value: object, claim: str, email_domains: frozenset[str]) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    if claim != "email":
        return value
    # An e-mail address maps to its local part (alice@example.org acts as alice), but only in
    # domains this cluster's accounts belong to: alice@elsewhere.example is someone else.
    local, at, domain = value.partition("@")
    if not at or not local or "@" in domain:
        raise IdentityRefused(value, "the e-mail claim is not one address")
    if domain.lower() not in email_domains:
        raise IdentityRefused(value, f"e-mail domain {domain[:60]!r} is not accepted")
    return local
