"""The identity floor: the service never acts as root or as a system account.

Whatever a token map, a JWT claim, a user map or an API Gateway authorizer says, a request may
only act as an account whose UID is at least SLURM_GRAPHQL_MIN_UID (default 1000, where most
distributions start human accounts). `root` and `slurm` are refused by name everywhere, even
where this machine has no passwd entry for them; other names are looked up in the local passwd
database when they exist here (the head node applies the same rule where the commands run).

Static names (token maps, the user map, the anonymous user) are checked at start-up; names from
claims at request time, where a refusal is PERMISSION_DENIED and audited.
"""

from __future__ import annotations

import os
import pwd

from slurm_graphql.errors import SlurmGraphQLError

DEFAULT_MIN_UID = 1000
# Refused by name, wherever they are defined: root, and `slurm`, the conventional SlurmUser, which
# Slurm treats as an operator (Debian gives it UID 64030, above any floor by number).
NEVER = frozenset({"root", "slurm"})


class IdentityRefused(SlurmGraphQLError):
    """A request's verified claims name an account the service must never act as (below the
    floor, or an e-mail address outside the configured domains)."""

    def __init__(self, claimed: str, reason: str) -> None:
        super().__init__(reason)
        self.claimed = claimed  # what the claims said, for the audit line
        self.reason = reason


def floor_violation(user: str, min_uid: int, server_account: str | None = None) -> str | None:
    """Why the service may not act as `user`, or None when it may. `server_account` is the
    account this process runs as (looked up when not given)."""
    if user in NEVER:
        return f"{user} is never acted as"
    if user == (server_account or _server_account()):
        # A server not running as root (local:// in development) runs its own user's commands
        # without a switch: acting as it would read what the server can (its token file).
        return f"{user} is the server's own account"
    try:
        # Local lookup (files, or the host's NSS cache): microseconds, so fine on the event loop.
        uid = pwd.getpwnam(user).pw_uid
    except KeyError:
        return None  # unknown here: the head node's own guard decides
    if uid < min_uid:
        return f"{user} is a system account (uid {uid} < {min_uid})"
    return None


def check_floor(user: str, min_uid: int, claimed: str | None = None) -> None:
    """Raises IdentityRefused when `user` is below the floor (`claimed`: what mapped to it)."""
    reason = floor_violation(user, min_uid)
    if reason is not None:
        raise IdentityRefused(claimed or user, reason)


def _server_account() -> str | None:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return None
