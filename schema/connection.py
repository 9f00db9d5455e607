"""Relay-style connection over jobs: edges { cursor node }, pageInfo, totalCount."""

from __future__ import annotations

from collections.abc import Sequence

import strawberry

from resolvers.pagination import encode_cursor, paginate
from resolvers.selection import filter_jobs
from resolvers.slurm.jobs import JobRecord
from resolvers.snapshot import Snapshot
from schema.filters import JobFilter
from schema.job import Job


@strawberry.type
class PageInfo:
    has_next_page: bool
    has_previous_page: bool
    start_cursor: str | None
    end_cursor: str | None


@strawberry.type
class JobEdge:
    cursor: str
    node: Job


@strawberry.type(description="A page of jobs, ordered by Slurm's unique job id.")
class JobConnection:
    edges: list[JobEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Jobs matching the filter, on all pages.")


def job_connection(
    snapshot: Snapshot,
    job_filter: JobFilter | None,
    first: int | None,
    after: str | None,
    default_page_size: int,
    only_partition: str | None = None,
) -> JobConnection:
    """Filter the snapshot's jobs, cut one page, and wrap it (first/after are pre-validated)."""
    records: Sequence[JobRecord] = snapshot.jobs_sorted
    criteria = job_filter or JobFilter()
    partitions = criteria.partitions
    if only_partition is not None:
        partitions = [p for p in (partitions or [only_partition]) if p == only_partition]
    if any(
        value is not None
        for value in (criteria.states, criteria.users, criteria.names, criteria.ids, partitions)
    ):
        records = filter_jobs(
            records,
            states=None if criteria.states is None else {s.value for s in criteria.states},
            users=None if criteria.users is None else set(criteria.users),
            partitions=None if partitions is None else set(partitions),
            names=None if criteria.names is None else set(criteria.names),
            ids=criteria.ids,
        )
    page = paginate(records, default_page_size if first is None else first, after)
    edges = [JobEdge(cursor=encode_cursor(r), node=Job.from_record(r, snapshot)) for r in page.jobs]
    return JobConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=edges[0].cursor if edges else None,
            end_cursor=edges[-1].cursor if edges else None,
        ),
        total_count=page.total_count,
    )
