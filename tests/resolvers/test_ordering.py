"""Ordered listings, pure, on the real squeue capture: every field in both directions, null
values last, keyset cursors that neither skip nor repeat a job while jobs come and go, and
forged cursors refused."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from resolvers.ids import BadUserInput
from resolvers.ordering import MAX_CURSOR, OrderField, Ordering, paginate_ordered
from resolvers.slurm.jobs import JobRow
from tests.security.test_visibility import golden_rows

ATTRIBUTE = {
    OrderField.ID: None,
    OrderField.SUBMIT_TIME: "submit_time",
    OrderField.START_TIME: "start_time",
    OrderField.END_TIME: "end_time",
    OrderField.PRIORITY: "priority",
    OrderField.NAME: "name",
    OrderField.USER: "user",
}


def reference(rows: list[JobRow], field: OrderField, descending: bool) -> list[int]:
    """The order by plain Python: values sorted, nulls after them, ties by job id."""

    def value(row: JobRow) -> Any:
        name = ATTRIBUTE[field]
        return row.job_id if name is None else getattr(row.fields(), name)

    present = [r for r in rows if value(r) is not None]
    absent = sorted((r for r in rows if value(r) is None), key=lambda r: r.job_id)
    by_id = sorted(present, key=lambda r: r.job_id)
    ordered = sorted(by_id, key=value, reverse=descending)
    if descending and field is not OrderField.ID:  # reverse=True keeps ties stable; by id
        ordered = sorted(ordered, key=lambda r: r.job_id)
        ordered = sorted(ordered, key=value, reverse=True)
    return [r.job_id for r in ordered + absent]


@pytest.mark.parametrize("field", list(OrderField))
@pytest.mark.parametrize("descending", [False, True])
def test_every_field_orders_as_python_does(field: OrderField, descending: bool) -> None:
    """Paging 3 at a time through the capture in any order yields Python's order."""
    rows = golden_rows()
    ordering = Ordering(((field, descending),))
    seen: list[int] = []
    after = None
    while True:
        page = paginate_ordered(rows, ordering, 3, after)
        seen += [r.job_id for r in page.page.jobs]
        if not page.page.has_next_page:
            break
        after = page.cursors[-1]
    assert seen == reference(rows, field, descending)


def test_cursors_hold_while_jobs_come_and_go() -> None:
    """Between two pages a seen job ends, an unseen one ends and a new one arrives: the next
    page starts right after the last job seen, nothing is repeated, no survivor is skipped."""
    rows = golden_rows()
    ordering = Ordering(((OrderField.USER, False), (OrderField.SUBMIT_TIME, True)))
    first = paginate_ordered(rows, ordering, 4, None)
    shown = [r.job_id for r in first.page.jobs]
    full = [r.job_id for _, r in ordering.sort(rows)]
    gone = {shown[1], full[6]}
    newcomer = rows[0]._replace(job_id=10**9)  # same user and submit time as rows[0]
    now = [r for r in rows if r.job_id not in gone] + [newcomer]
    rest: list[int] = []
    after: str | None = first.cursors[-1]
    while after is not None:
        page = paginate_ordered(now, ordering, 4, after)
        rest += [r.job_id for r in page.page.jobs]
        after = page.cursors[-1] if page.page.has_next_page else None
    assert not set(rest) & set(shown)
    survivors = [j for j in full[4:] if j not in gone]
    assert [j for j in rest if j != newcomer.job_id] == survivors
    order_now = [r.job_id for _, r in ordering.sort(now)]
    assert (newcomer.job_id in rest) == (
        order_now.index(newcomer.job_id) > order_now.index(shown[-1])
    )


def forged(*parts: object) -> str:
    return base64.urlsafe_b64encode(("ord:" + json.dumps(list(parts))).encode()).decode()


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage!",
        base64.urlsafe_b64encode(b"job:42").decode(),  # a default cursor, with an orderBy
        forged("USER+", ["alice"], 42),  # another orderBy's cursor
        forged("NAME+,SUBMIT_TIME-", ["x"], 42),
        forged("NAME+,SUBMIT_TIME-", ["x", "not a time"], 42),
        forged("NAME+,SUBMIT_TIME-", [5, 5], 42),
        forged("NAME+,SUBMIT_TIME-", ["x", 5], "42"),
        forged("NAME+,SUBMIT_TIME-", ["x", True], 42),
        forged("NAME+,SUBMIT_TIME-", ["x" * MAX_CURSOR, 5], 42),
    ],
)
def test_forged_cursors_are_bad_user_input(cursor: str) -> None:
    """A cursor this orderBy did not issue is BAD_USER_INPUT, never a comparison error."""
    ordering = Ordering(((OrderField.NAME, False), (OrderField.SUBMIT_TIME, True)))
    with pytest.raises(BadUserInput):
        paginate_ordered(golden_rows(), ordering, 3, cursor)


def test_a_field_named_twice_is_refused() -> None:
    """orderBy names each field at most once."""
    with pytest.raises(BadUserInput):
        Ordering(((OrderField.NAME, False), (OrderField.NAME, True)))


@pytest.mark.parametrize("descending", [False, True])
def test_the_id_order_shortcut_keys_as_the_general_path(descending: bool) -> None:
    """Ordering by ID alone skips reading the rows' fields; its keys and order are exactly the
    general path's, so cursors issued by either are read the same."""
    ordering = Ordering(((OrderField.ID, descending),))
    rows = golden_rows()
    general = sorted(
        ((ordering.key(ordering.values(row), row.job_id), row) for row in rows),
        key=lambda pair: pair[0],
    )
    assert ordering.sort(rows) == general
