"""Filters become criteria once, validated, the same way for listings, partitions' listings and
subscriptions; the schema builds no Slurm command and reaches into no private attribute but
through the one fence for strawberry's info."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import strawberry

from resolvers.ids import BadUserInput
from resolvers.selection import JobCriteria
from schema.enums import JobState, NodeState
from schema.filters import JobFilter, NodeFilter
from schema.resolve_info import resolve_info
from tests.conftest import Api

SCHEMA_DIR = Path(__file__).resolve().parents[2] / "schema"
BAD_NAME = "a\x01b"  # a control byte: no user, partition or job is named so


def test_a_job_filter_becomes_one_validated_criteria() -> None:
    """Each field carried over; names validated; a partition's own listing narrows to it."""
    job_filter = JobFilter(
        states=[JobState.PENDING], users=["alice"], partitions=["debug", "batch"], ids=["42_3"]
    )
    assert job_filter.criteria() == JobCriteria(
        states=frozenset({"PENDING"}),
        users=frozenset({"alice"}),
        partitions=frozenset({"debug", "batch"}),
        ids=("42_3",),
    )
    assert job_filter.criteria(only_partition="batch").partitions == frozenset({"batch"})
    assert JobFilter().criteria(only_partition="batch").partitions == frozenset({"batch"})
    assert job_filter.criteria(only_partition="gpu").partitions == frozenset()


@pytest.mark.parametrize(
    "job_filter",
    [
        JobFilter(users=[BAD_NAME]),
        JobFilter(partitions=["x" * 300]),
        JobFilter(names=["\ud800"]),
        JobFilter(ids=["42; id"]),
    ],
    ids=["user", "partition", "name", "id"],
)
def test_a_bad_value_in_a_job_filter_is_refused(job_filter: JobFilter) -> None:
    """Control bytes, overlong names, lone surrogates and non-ids are the client's error."""
    with pytest.raises(BadUserInput):
        job_filter.criteria()


def test_a_node_filter_validates_its_partitions() -> None:
    """States as node_state names them; partitions validated like every other name."""
    node_filter = NodeFilter(states=[NodeState.IDLE], partitions=["debug"])
    assert node_filter.state_values() == frozenset({"IDLE"})
    assert node_filter.partition_names() == frozenset({"debug"})
    assert NodeFilter().state_values() is None and NodeFilter().partition_names() is None
    with pytest.raises(BadUserInput):
        NodeFilter(partitions=[BAD_NAME]).partition_names()


@pytest.mark.parametrize(
    "query",
    [
        '{ cluster { jobs(filter: {users: ["a\\u0001b"]}) { totalCount } } }',
        '{ cluster { partitions { jobs(filter: {names: ["a\\u0001b"]}) { totalCount } } } }',
        '{ cluster { nodes(filter: {partitions: ["a\\u0001b"]}) { name } } }',
    ],
    ids=["jobs", "a partition's jobs", "nodes"],
)
async def test_listings_refuse_a_bad_filter_value(api: Api, query: str) -> None:
    """Over HTTP, a filter value no name can hold is BAD_USER_INPUT, not an empty answer."""
    body = await api.query(query)
    assert [e["extensions"]["code"] for e in body["errors"]] == ["BAD_USER_INPUT"], body


def test_the_schema_builds_no_slurm_command_and_reads_no_private_attribute() -> None:
    """Commands live in resolvers/slurm/; `_record` is read only by its own type; strawberry's
    `_raw_info` only through schema/resolve_info.py."""
    for path in SCHEMA_DIR.glob("*.py"):
        text = path.read_text()
        argv = re.search(r"[\[(]\s*[\"'](scancel|scontrol|sbatch|squeue|sinfo|sacct)[\"'],", text)
        assert argv is None, path
        assert not re.search(r"(?<!self)\._record\b", text), path
        if path.name != "resolve_info.py":
            assert "_raw_info" not in text, path


def test_the_fence_reaches_graphql_cores_info() -> None:
    """strawberry still carries graphql-core's info where resolve_info looks for it."""
    seen: list[Any] = []

    @strawberry.type
    class Query:
        @strawberry.field
        def probe(self, info: strawberry.Info) -> int:
            raw = resolve_info(info)
            seen.append([node.name.value for node in raw.field_nodes])
            return 1

    result = strawberry.Schema(query=Query).execute_sync("{ probe }")
    assert result.errors is None and result.data == {"probe": 1}
    assert seen == [["probe"]]
