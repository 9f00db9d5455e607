"""Accounts, QOS and associations from slurmdbd (`sacctmgr show … --parsable2`), and fair-share
(`sshare --parsable2`): the commands and their parsers. Pure.

sacctmgr and sshare have no `--delimiter`: fields are split at `|`. Names of accounts, users,
partitions and QOS cannot hold `|` (sacctmgr refuses them); free text (an account's description
and organization) goes last, so a `|` there stays inside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from resolvers.slurm.errors import ParseError
from resolvers.slurm.values import float_or_none, int_or_none, minutes_or_none, text_or_none
from transport.base import Command

ASSOC_FIELDS = (
    "Cluster",
    "Account",
    "User",
    "Partition",
    "QOS",
    "DefaultQOS",
    "Share",
    "GrpTRES",
    "MaxJobs",
    "MaxSubmit",
    "MaxWall",
    "MaxTRES",
    "ParentName",
)
QOS_FIELDS = ("Name", "Priority", "MaxWall", "MaxTRESPU", "MaxJobsPU", "MaxSubmitPU", "Description")
ACCOUNT_FIELDS = ("Account", "Organization", "Description")
SSHARE_FIELDS = (
    "Account",
    "User",
    "RawShares",
    "NormShares",
    "RawUsage",
    "EffectvUsage",
    "FairShare",
)


@dataclass(frozen=True, slots=True)
class AssociationRecord:
    """Where a user may submit: an account (and maybe a partition), its QOS and limits."""

    cluster: str
    account: str
    user: str | None  # None for the account's own association
    partition: str | None
    qos: tuple[str, ...]
    default_qos: str | None
    shares: int | None
    group_tres: str | None
    max_jobs: int | None
    max_submit: int | None
    max_wall_minutes: int | None
    max_tres: str | None
    parent: str | None


@dataclass(frozen=True, slots=True)
class QosRecord:
    name: str
    priority: int
    max_wall_minutes: int | None
    max_tres_per_user: str | None
    max_jobs_per_user: int | None
    max_submit_per_user: int | None
    description: str | None


@dataclass(frozen=True, slots=True)
class AccountRecord:
    name: str
    organization: str | None
    description: str | None


@dataclass(frozen=True, slots=True)
class ShareRecord:
    """One line of sshare: an account's or a user's share of the cluster and their usage."""

    account: str
    user: str | None
    raw_shares: int | None
    normalized_shares: float | None
    raw_usage: int | None
    effective_usage: float | None
    fair_share: float | None  # None under priority/basic, which computes none for accounts


def _sacctmgr(entity: str, fields: Sequence[str], *where: str) -> Command:
    argv = ("sacctmgr", "--noheader", "--parsable2", "show", entity, *where)
    return Command((*argv, "format=" + ",".join(fields)))


def associations_command(user: str | None = None) -> Command:
    """Every association, or one user's (the name must be a validated POSIX user name)."""
    return _sacctmgr("associations", ASSOC_FIELDS, *((f"users={user}",) if user else ()))


def qos_command() -> Command:
    return _sacctmgr("qos", QOS_FIELDS)


def accounts_command() -> Command:
    return _sacctmgr("accounts", ACCOUNT_FIELDS)


def sshare_command(user: str | None = None) -> Command:
    """Fair-share of every association (`-a`), or of one user's (`--users=`)."""
    who = (f"--users={user}",) if user else ("--all",)
    return Command(
        ("sshare", "--noheader", "--parsable2", *who, "--format=" + ",".join(SSHARE_FIELDS))
    )


def _split(command: str, text: str, fields: Sequence[str]) -> list[list[str]]:
    rows = []
    for line in text.replace("\r\n", "\n").split("\n"):
        if not line:
            continue
        values = line.split("|", len(fields) - 1)
        if len(values) != len(fields):
            raise ParseError(command, line, "wrong number of fields")
        rows.append(values)
    return rows


def parse_associations(text: str) -> list[AssociationRecord]:
    records = []
    for values in _split("sacctmgr", text, ASSOC_FIELDS):
        v = dict(zip(ASSOC_FIELDS, values, strict=True))
        records.append(
            AssociationRecord(
                cluster=v["Cluster"],
                account=v["Account"],
                user=text_or_none(v["User"]),
                partition=text_or_none(v["Partition"]),
                qos=tuple(q for q in v["QOS"].split(",") if q),
                default_qos=text_or_none(v["DefaultQOS"]),
                shares=int_or_none(v["Share"]),
                group_tres=text_or_none(v["GrpTRES"]),
                max_jobs=int_or_none(v["MaxJobs"]),
                max_submit=int_or_none(v["MaxSubmit"]),
                max_wall_minutes=minutes_or_none(v["MaxWall"]),
                max_tres=text_or_none(v["MaxTRES"]),
                parent=text_or_none(v["ParentName"]),
            )
        )
    return records


def parse_qos(text: str) -> list[QosRecord]:
    records = []
    for values in _split("sacctmgr", text, QOS_FIELDS):
        v = dict(zip(QOS_FIELDS, values, strict=True))
        records.append(
            QosRecord(
                name=v["Name"],
                priority=int_or_none(v["Priority"]) or 0,
                max_wall_minutes=minutes_or_none(v["MaxWall"]),
                max_tres_per_user=text_or_none(v["MaxTRESPU"]),
                max_jobs_per_user=int_or_none(v["MaxJobsPU"]),
                max_submit_per_user=int_or_none(v["MaxSubmitPU"]),
                description=text_or_none(v["Description"]),
            )
        )
    return records


def parse_accounts(text: str) -> list[AccountRecord]:
    return [
        AccountRecord(name=a, organization=text_or_none(o), description=text_or_none(d))
        for a, o, d in _split("sacctmgr", text, ACCOUNT_FIELDS)
    ]


def parse_sshare(text: str) -> list[ShareRecord]:
    """sshare's rows; the tree's indentation (leading spaces of Account) is dropped."""
    records = []
    for values in _split("sshare", text, SSHARE_FIELDS):
        v = dict(zip(SSHARE_FIELDS, values, strict=True))
        records.append(
            ShareRecord(
                account=v["Account"].strip(),
                user=text_or_none(v["User"]),
                raw_shares=int_or_none(v["RawShares"]),
                normalized_shares=float_or_none(v["NormShares"]),
                raw_usage=int_or_none(v["RawUsage"]),
                effective_usage=float_or_none(v["EffectvUsage"]),
                fair_share=float_or_none(v["FairShare"]),
            )
        )
    return records
