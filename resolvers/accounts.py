"""Accounts, QOS and the requester's associations with their fair-share, from slurmdbd.

Each is one command run as the requesting user, so Slurm's own PrivateData (accounts, users)
decides what they may read; a cluster without slurmdbd answers ACCOUNTING_UNAVAILABLE
(schema/errors.py) with Slurm's message.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from resolvers.slurm.errors import check
from resolvers.slurm.sacctmgr import (
    AccountRecord,
    AssociationRecord,
    QosRecord,
    ShareRecord,
    accounts_command,
    associations_command,
    parse_accounts,
    parse_associations,
    parse_qos,
    parse_sshare,
    qos_command,
    sshare_command,
)
from transport.base import Command, Transport

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class UserAssociation:
    """Where the user may submit, and their fair-share there (None if sshare has no line)."""

    association: AssociationRecord
    share: ShareRecord | None


async def _one(
    transport: Transport, user: str, command: Command, parse: Callable[[str], list[T]]
) -> list[T]:
    [result] = await transport.run([Command(command.argv, env=command.env, user=user)])
    return parse(check(result).stdout)


async def accounts(transport: Transport, user: str) -> list[AccountRecord]:
    return await _one(transport, user, accounts_command(), parse_accounts)


async def qos(transport: Transport, user: str) -> list[QosRecord]:
    return await _one(transport, user, qos_command(), parse_qos)


async def associations(transport: Transport, user: str) -> list[UserAssociation]:
    """The user's own associations and fair-share: sacctmgr and sshare in one round trip."""
    commands = [associations_command(user), sshare_command(user)]
    results = await transport.run([Command(c.argv, env=c.env, user=user) for c in commands])
    found = [a for a in parse_associations(check(results[0]).stdout) if a.user == user]
    shares = {
        (s.account, s.user): s for s in parse_sshare(check(results[1]).stdout) if s.user == user
    }
    return [UserAssociation(a, shares.get((a.account, user))) for a in found]
