"""Global ids, pure: they round-trip, name the cluster, are refused when forged or huge, and
`node(id:)` / `nodes(ids:)` plan exactly the datasets (and jobs) their objects need."""

from __future__ import annotations

import base64
import json

import pytest

from resolvers.global_ids import (
    MAX_GLOBAL_ID,
    MAX_IDS,
    GlobalId,
    Kind,
    decode_global_id,
    global_id,
    read_global_id,
    read_global_ids,
)
from resolvers.ids import BadUserInput
from resolvers.scope import EVERY_JOB, JobScope
from resolvers.snapshot import ACTIVE_JOB_STATES, Need
from tests.resolvers.test_scope import plan


def raw_id(*parts: object) -> str:
    """An id made by hand, as a forger would."""
    return base64.urlsafe_b64encode(json.dumps(list(parts)).encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    "made",
    [
        GlobalId(Kind.CLUSTER, "local", ""),
        GlobalId(Kind.PARTITION, "local", "batch"),
        GlobalId(Kind.COMPUTE_NODE, "other", "n1"),
        GlobalId(Kind.JOB, "local", "42"),
        GlobalId(Kind.JOB_STEP, "local", "42.batch"),
        GlobalId(Kind.JOB_STEP, "local", "42.3+1"),
        GlobalId(Kind.PARTITION, "é:/\"'", "a b,c"),  # any name without control bytes
    ],
)
def test_ids_round_trip(made: GlobalId) -> None:
    """Every id decodes to what made it, and is URL-safe text."""
    encoded = made.encode()
    assert decode_global_id(encoded) == made
    assert encoded.replace("-", "").replace("_", "").isalnum()


def test_the_same_job_of_two_clusters_has_two_ids() -> None:
    """job 42 of cluster a and of cluster b are two cache entries (and not a display id)."""
    assert global_id(Kind.JOB, "a", "42") != global_id(Kind.JOB, "b", "42")
    assert global_id(Kind.JOB, "a", "42") != global_id(Kind.COMPUTE_NODE, "a", "42")


@pytest.mark.parametrize(
    "forged",
    [
        "",
        "not an id",
        "%%%",
        "42",  # a Slurm id is not a global id
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        raw_id("Job", "local"),
        raw_id("Job", "local", 42),
        raw_id("Account", "local", "x"),  # not a kind the API makes
        raw_id("Job", "local", "42_3"),  # display ids are not keys
        raw_id("Job", "local", "1;rm -rf /"),
        raw_id("Job", "local", "\u0664\u0662"),  # digits of another script
        raw_id("Cluster", "local", "x"),
        raw_id("JobStep", "local", "42"),  # a step names its job and itself
        raw_id("JobStep", "local", "42_3.batch"),  # by the job's unique id only
        raw_id("JobStep", "local", "42.batch --allusers"),
        raw_id("JobStep", "local", "42.0,43.0"),
        raw_id("ComputeNode", "local", "n1\nINJECTED"),
        raw_id("Partition", "lo\x00cal", "batch"),
        raw_id("Partition", "local", "\ud800"),
        raw_id("Partition", "local", "p" * 300),
        "A" * (MAX_GLOBAL_ID + 1),
        {"id": "x"},
    ],
)
def test_forged_ids_name_nothing(forged: object) -> None:
    """Whatever the API could not have made is refused by the strict decoder, and names nothing
    (never another object) for node(id:)."""
    with pytest.raises(BadUserInput):
        decode_global_id(forged)
    assert read_global_id(forged) is None


def test_a_list_of_ids_is_capped() -> None:
    """nodes(ids:) takes MAX_IDS ids, not one more."""
    one = global_id(Kind.JOB, "local", "1")
    assert len(read_global_ids([one] * MAX_IDS)) == MAX_IDS
    with pytest.raises(BadUserInput):
        read_global_ids([one] * (MAX_IDS + 1))


def test_node_plans_what_its_object_needs() -> None:
    """A job's id pushes that job to squeue; nested fields add their datasets; a partition's
    jobs are that partition's; a cluster's fields plan as under `cluster`."""
    job = global_id(Kind.JOB, "local", "42")
    found = plan("query($id: ID!) { node(id: $id) { id ... on Job { nodes { name } } } }", id=job)
    assert found.needs_of("local") == Need.JOBS | Need.NODES
    assert found.scope_of("local") == JobScope(ids=frozenset({"42"}), paths=False)
    assert found.needs_of("other") == Need.NOTHING

    partition = global_id(Kind.PARTITION, "other", "batch")
    found = plan(
        f'{{ node(id: "{partition}") {{ ... on Partition {{ jobs {{ totalCount }} }} }} }}'
    )
    assert found.needs_of("other") == Need.PARTITIONS | Need.JOBS
    assert found.scope_of("other") == JobScope(partitions=frozenset({"batch"}))

    cluster = global_id(Kind.CLUSTER, "local")
    found = plan(f'{{ node(id: "{cluster}") {{ ... on Cluster {{ job(id: "7") {{ id }} }} }} }}')
    assert found.scope_of("local") == JobScope(ids=frozenset({"7"}), recall=True, paths=False)

    node = global_id(Kind.COMPUTE_NODE, "local", "n3")
    found = plan(f'{{ node(id: "{node}") {{ ... on ComputeNode {{ jobs {{ id }} }} }} }}')
    assert found.needs_of("local") == Need.NODES | Need.JOBS
    assert found.scope_of("local") == JobScope(states=ACTIVE_JOB_STATES, nodes=frozenset({"n3"}))


def test_nodes_plan_one_snapshot_per_cluster() -> None:
    """Ids of two clusters plan each cluster's own needs; unknown clusters plan nothing."""
    ids = [
        global_id(Kind.JOB, "local", "1"),
        global_id(Kind.JOB, "local", "2"),
        global_id(Kind.COMPUTE_NODE, "other", "n1"),
        global_id(Kind.JOB, "elsewhere", "3"),
    ]
    found = plan("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", ids=ids)
    assert found.needs_of("local") == Need.JOBS
    assert found.scope_of("local") == JobScope(ids=frozenset({"1", "2"}), paths=False)
    assert found.needs_of("other") == Need.NODES
    assert found.scope_of("other") == EVERY_JOB  # reads no job at all
    assert "elsewhere" not in found.needs


def test_a_forged_id_plans_nothing_and_too_many_refuse_the_plan() -> None:
    """A forged id names nothing, so the plan reads nothing for it; too many ids refuse the
    request before any command, as a bad job id does."""
    assert not plan('{ node(id: "garbage!") { id } }').needs
    with pytest.raises(BadUserInput):
        plan("query($ids: [ID!]!) { nodes(ids: $ids) { id } }", ids=["x"] * (MAX_IDS + 1))
