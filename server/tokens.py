"""Static bearer tokens: `SLURM_GRAPHQL_TOKENS="tok1=alice,tok2=bob,tok3=carol:admin"`, or the
same entries one per line in `SLURM_GRAPHQL_TOKENS_FILE` (`#` comments and blank lines allowed).

A bearer token names a Unix user (and optionally the admin role). Only each token's SHA-256 digest
is kept: a dump of the settings (or of the process memory's settings) hands out no token. A
presented token is hashed and compared with every digest in constant time.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable
from dataclasses import dataclass

from resolvers.identity import Identity, InvalidUserName
from server.settings_error import SettingsError

# Shorter tokens can be guessed online; `openssl rand -hex 32` makes a good one.
MIN_TOKEN_LENGTH = 8


class TokenMapError(SettingsError):
    """A token map is malformed; the message says where, never the token."""


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


@dataclass(frozen=True)
class TokenMap:
    """Token digests and the identity each one acts as."""

    entries: tuple[tuple[bytes, Identity], ...] = ()

    def __repr__(self) -> str:
        return f"TokenMap({len(self.entries)} tokens)"

    def __len__(self) -> int:
        return len(self.entries)

    def identities(self) -> tuple[Identity, ...]:
        return tuple(identity for _, identity in self.entries)

    def identity(self, presented: str) -> Identity | None:
        """The identity of a presented token; None if it is unknown. Every entry is compared,
        in constant time, so timing does not reveal which entry (if any) matched."""
        found: Identity | None = None
        candidate = _digest(presented)
        for digest, identity in self.entries:
            if hmac.compare_digest(digest, candidate):
                found = identity
        return found


def parse_token_map(value: str, source: str = "SLURM_GRAPHQL_TOKENS") -> TokenMap:
    """Comma-separated `token=user[:admin]` entries."""
    return _token_map(((n, part) for n, part in enumerate(value.split(","), 1)), source, "entry")


def parse_token_lines(text: str, source: str = "SLURM_GRAPHQL_TOKENS_FILE") -> TokenMap:
    """One `token=user[:admin]` entry a line; `#` starts a comment line."""
    lines = ((n, line) for n, line in enumerate(text.splitlines(), 1))
    return _token_map(
        ((n, line) for n, line in lines if not line.strip().startswith("#")), source, "line"
    )


def _token_map(items: Iterable[tuple[int, str]], source: str, unit: str) -> TokenMap:
    entries: dict[bytes, Identity] = {}
    for position, raw in items:
        item = raw.strip()
        if not item:
            continue
        # The user part never holds `=`, so a token may (base64 padding).
        token, sep, who = (part.strip() for part in item.rpartition("="))
        user, colon, role = who.partition(":")
        where = f"{source}: {unit} {position}"
        if not sep or not token or (colon and role != "admin"):
            raise TokenMapError(f"{where} is not token=user or token=user:admin")
        if len(token) < MIN_TOKEN_LENGTH or any(c.isspace() for c in token):
            raise TokenMapError(
                f"{where}: a token needs at least {MIN_TOKEN_LENGTH} characters and no spaces"
            )
        try:
            identity = Identity(user=user, admin=bool(colon))
        except InvalidUserName as exc:
            raise TokenMapError(f"{where}: {exc}") from None
        digest = _digest(token)
        if digest in entries:
            raise TokenMapError(f"{where} repeats a token")
        entries[digest] = identity
    return TokenMap(tuple(entries.items()))


def bearer_token(authorization: str | None) -> str | None:
    """The token of an `Authorization: Bearer <token>` header, if that is what it holds."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
