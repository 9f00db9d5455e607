"""Relay-style connection over jobs: edges { cursor node }, pageInfo, totalCount."""

from __future__ import annotations

import strawberry

from resolvers.context import RequestContext
from resolvers.ordering import paginate_ordered
from resolvers.pagination import encode_cursor, paginate
from resolvers.snapshot import Snapshot
from schema.errors import expected_errors_raised_as_graphql
from schema.filters import JobFilter, JobOrder, ordering_of
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
    _cursor: strawberry.Private[str | None] = None

    @strawberry.field(
        description="Where the page after this job starts (pass it as `after`, with the same "
        "orderBy)."
    )
    def cursor(self) -> str:
        return self._cursor or encode_cursor(self.node.record.job_id)


@strawberry.type(
    description="A page of jobs, by Slurm's unique job id unless `orderBy` says otherwise."
)
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
    order_by: list[JobOrder] | None = None,
) -> JobConnection:
    """Filter the snapshot's jobs, order them, cut one page, and wrap it (first/after are
    pre-validated)."""
    size = default_page_size if first is None else first
    with expected_errors_raised_as_graphql():
        criteria = (job_filter or JobFilter()).criteria(only_partition)
        ordering = ordering_of(order_by)
        records = snapshot.jobs_matching(criteria)
        if ordering.by_id_only:
            page = paginate(records, size, after)
            cursors = tuple(encode_cursor(r.job_id) for r in page.jobs)
        else:
            ordered = paginate_ordered(records, ordering, size, after)
            page, cursors = ordered.page, ordered.cursors
    context.jobs_listed += len(page.jobs)
    edges = [
        JobEdge(node=Job.from_row(r, snapshot), _cursor=c)
        for r, c in zip(page.jobs, cursors, strict=True)
    ]
    return JobConnection(
        edges=edges,
        page_info=PageInfo(
            has_next_page=page.has_next_page,
            has_previous_page=page.has_previous_page,
            start_cursor=cursors[0] if cursors else None,
            end_cursor=cursors[-1] if cursors else None,
        ),
        total_count=page.total_count,
    )
