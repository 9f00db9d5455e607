"""Who a request acts as: the Unix user Slurm sees, and whether that user administers the API.

Every command a request runs carries this user, and the transport switches to it (`runuser`) on
the head node, so Slurm and the file system apply their own permission checks to the real user.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

# The portable POSIX user name rule most distributions enforce (useradd's default).
_POSIX_USER = re.compile(r"^[a-z_][a-z0-9_-]{0,31}\Z")


class InvalidUserName(ValueError):
    """A configured or mapped user name is not a safe POSIX user name."""


def validate_user_name(name: str) -> str:
    if not _POSIX_USER.match(name):
        raise InvalidUserName(f"{name[:40]!r} is not a valid POSIX user name")
    return name


@dataclass(frozen=True, slots=True)
class Identity:
    """`user` None means the server's own user (no token map configured)."""

    user: str | None
    admin: bool = False

    def __post_init__(self) -> None:
        if self.user is not None:
            validate_user_name(self.user)

    @property
    def cache_key(self) -> str:
        """Distinguishes identities in caches of per-user answers."""
        return f"{self.user or ''}:{int(self.admin)}"

    def control_user(self) -> str | None:
        """The user to run job control as: administrators act with the server's own rights
        (root on a head node, which Slurm treats as an administrator), everyone else as
        themselves, so Slurm's own ownership check decides."""
        return None if self.admin else self.user


SERVER_IDENTITY = Identity(user=None)
