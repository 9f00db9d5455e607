"""Types of accounting's configuration: accounts, QOS, associations and fair-share."""

from __future__ import annotations

import strawberry

from resolvers.accounts import UserAssociation
from resolvers.slurm.sacctmgr import AccountRecord, QosRecord, ShareRecord


@strawberry.type(description="A Slurm account (sacctmgr show accounts).")
class Account:
    name: str
    organization: str | None
    description: str | None

    @classmethod
    def of(cls, record: AccountRecord) -> Account:
        return cls(
            name=record.name, organization=record.organization, description=record.description
        )


@strawberry.type(description="A quality of service (sacctmgr show qos).")
class Qos:
    name: str
    priority: int
    max_wall_minutes: int | None
    max_tres_per_user: str | None
    max_jobs_per_user: int | None
    max_submit_per_user: int | None
    description: str | None

    @classmethod
    def of(cls, record: QosRecord) -> Qos:
        return cls(
            name=record.name,
            priority=record.priority,
            max_wall_minutes=record.max_wall_minutes,
            max_tres_per_user=record.max_tres_per_user,
            max_jobs_per_user=record.max_jobs_per_user,
            max_submit_per_user=record.max_submit_per_user,
            description=record.description,
        )


@strawberry.type(description="The user's fair-share in one association (sshare).")
class FairShare:
    raw_shares: int | None
    normalized_shares: float | None
    raw_usage: int | None
    effective_usage: float | None
    fair_share: float | None = strawberry.field(
        description="Slurm's fair-share factor, 0..1; null under priority/basic."
    )

    @classmethod
    def of(cls, record: ShareRecord) -> FairShare:
        return cls(
            raw_shares=record.raw_shares,
            normalized_shares=record.normalized_shares,
            raw_usage=record.raw_usage,
            effective_usage=record.effective_usage,
            fair_share=record.fair_share,
        )


@strawberry.type(description="Where the user may submit: account, partition, QOS and limits.")
class Association:
    cluster: str
    account: str
    partition: str | None = strawberry.field(description="Null: any partition.")
    qos: list[str]
    default_qos: str | None
    max_jobs: int | None
    max_submit: int | None
    max_wall_minutes: int | None
    group_tres: str | None
    max_tres: str | None
    fair_share: FairShare | None

    @classmethod
    def of(cls, found: UserAssociation) -> Association:
        a = found.association
        return cls(
            cluster=a.cluster,
            account=a.account,
            partition=a.partition,
            qos=list(a.qos),
            default_qos=a.default_qos,
            max_jobs=a.max_jobs,
            max_submit=a.max_submit,
            max_wall_minutes=a.max_wall_minutes,
            group_tres=a.group_tres,
            max_tres=a.max_tres,
            fair_share=None if found.share is None else FairShare.of(found.share),
        )
