"""Relay-style connection over jobs: edges { cursor node }, pageInfo, totalCount."""

from __future__ import annotations

import strawberry

from resolvers.context import RequestContext
from resolvers.pagination import encode_cursor, paginate
from resolvers.snapshot import Snapshot
from schema.errors import expected_errors_raised_as_graphql
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
    node: Job

    @strawberry.field(description="Where the page after this job starts (pass it as `after`).")
    def cursor(self) -> str:
        return encode_cursor(self.node.record.job_id)


@strawberry.type(description="A page of jobs, ordered by Slurm's unique job id.")
class JobConnection:
    edges: list[JobEdge]
    page_info: PageInfo
    total_count: int = strawberry.field(description="Jobs matching the filter, on all pages.")


def job_connection(
    context: RequestContext,
    snapshot: Snapshot,
    job_filter: JobFilter | None,
    first: int | None,
    after: str | None,
    default_page_size: int,
    only_partition: str | None = None,
) -> JobConnection:
    """Filter the snapshot's jobs, cut one page, and wrap it (first/after are pre-validated)."""
    with expected_errors_raised_as_graphql():
        criteria = (job_filter or JobFilter()).criteria(only_partition)
    records = snapshot.jobs_matching(criteria)
    page = paginate(records, default_page_size if first is None else first, after)
    context.jobs_listed += len(page.jobs)
    edges = [JobEdge(node=Job.from_row(r, snapshot)) for r in page.jobs]
    return JobConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=encode_cursor(page.jobs[0].job_id) if page.jobs else None,
            end_cursor=encode_cursor(page.jobs[-1].job_id) if page.jobs else None,
        ),
        total_count=page.total_count,
    )
