"""Who a request acts as: the Unix user Slurm sees, whether the caller proved it, and whether
that user administers the API.

Every command a request runs on a user's behalf carries this user, and the transport switches
to it (`runuser`) on the head node, so Slurm and the file system apply their own permission
checks to the real user. No identity stands for the server's own account: an unauthenticated
caller is `Identity.anonymous(...)`, an unprivileged account that may only read.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from slurm_graphql.errors import SlurmGraphQLError

# The portable POSIX user name rule most distributions enforce (useradd's default).
_POSIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")


class InvalidUserName(SlurmGraphQLError, ValueError):
    """A configured or mapped user name is not a safe POSIX user name."""


class Unauthenticated(SlurmGraphQLError):
    """The operation needs an authenticated identity and the request has none."""


def validate_user_name(name: str) -> str:
    if not isinstance(name, str) or not _POSIX_USER.match(name):
        raise InvalidUserName(f"{str(name)[:40]!r} is not a valid POSIX user name")
    return name


@dataclass(frozen=True, slots=True)
class Identity:
    """An authenticated caller (token, JWT, authorizer claims) unless made by `anonymous`."""

    user: str
    admin: bool = False
    authenticated: bool = True
    # When the credential stops proving this identity (Unix time: a JWT's `exp`, plus the
    # configured leeway); None for credentials that do not expire (the token map). Long-lived
    # connections close at this moment (server/credentials.py).
    expires_at: float | None = None

    def __post_init__(self) -> None:
        validate_user_name(self.user)
        if self.admin and not self.authenticated:
            raise ValueError("an anonymous identity cannot administer the API")

    @classmethod
    def anonymous(cls, user: str = "nobody") -> Identity:
        """A caller who proved nothing: reads as `user` (SLURM_GRAPHQL_ANONYMOUS_USER)."""
        return cls(user=user, admin=False, authenticated=False)

    @property
    def cache_key(self) -> str:
        """Distinguishes identities in caches of per-user answers."""
        return f"{self.user}:{int(self.admin)}:{int(self.authenticated)}"

    def expired(self, now: float) -> bool:
        return self.expires_at is not None and now >= self.expires_at

    def control_user(self) -> str | None:
        """The user to run job control as: administrators act with the server's own rights
        (root on a head node, which Slurm treats as an administrator: operator power over
        jobs), everyone else as themselves, so Slurm's own ownership check decides."""
        return None if self.admin else self.user
