"""The static token map: `SLURM_GRAPHQL_TOKENS="tok1=alice,tok2=bob,tok3=carol:admin"`.

A bearer token names a Unix user (and optionally the admin role). Tokens are compared in constant
time. With no map configured, every request acts as the server's own user.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping

from resolvers.identity import Identity, InvalidUserName


class TokenMapError(ValueError):
    """SLURM_GRAPHQL_TOKENS is malformed; the message says where, never the token."""


def parse_token_map(value: str) -> Mapping[str, Identity]:
    tokens: dict[str, Identity] = {}
    for position, item in enumerate(filter(None, (part.strip() for part in value.split(","))), 1):
        token, sep, who = item.partition("=")
        user, colon, role = who.partition(":")
        if not sep or not token or (colon and role != "admin"):
            raise TokenMapError(
                f"SLURM_GRAPHQL_TOKENS: entry {position} is not token=user or token=user:admin"
            )
        try:
            identity = Identity(user=user, admin=bool(colon))
        except InvalidUserName as exc:
            raise TokenMapError(f"SLURM_GRAPHQL_TOKENS: entry {position}: {exc}") from None
        if token in tokens:
            raise TokenMapError(f"SLURM_GRAPHQL_TOKENS: entry {position} repeats a token")
        tokens[token] = identity
    return tokens


def identity_for_token(tokens: Mapping[str, Identity], presented: str) -> Identity | None:
    """The identity of a presented token; None if it is unknown. Every entry is compared, in
    constant time, so timing does not reveal how much of a token was right."""
    found: Identity | None = None
    candidate = presented.encode()
    for token, identity in tokens.items():
        if hmac.compare_digest(token.encode(), candidate):
            found = identity
    return found


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if that is what it holds."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
