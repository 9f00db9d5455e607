"""Fetch plans, pure: what each query's job fields make squeue fetch, and the per-snapshot id
index that answers job(id) and ids filters exactly as the scan it replaced did."""

from __future__ import annotations

from typing import Any

import pytest
from graphql import FragmentDefinitionNode, OperationDefinitionNode, parse

from resolvers.identity import Identity
from resolvers.plan import Plan, plan_operation
from resolvers.scope import (
    EVERY_JOB,
    MAX_LISTED_IDS,
    MAX_PUSHED_IDS,
    JobScope,
    scope_of_job,
)
from resolvers.selection import JobCriteria, filter_jobs, job_matches_id
from resolvers.slurm.jobs import JobRow
from resolvers.snapshot import ACTIVE_JOB_STATES, Need, Snapshot, _batch_for
from resolvers.visibility import EVERYONE, Visibility
from tests.security.test_visibility import golden_rows


def plan(query: str, **variables: Any) -> Plan:
    document = parse(query)
    operation = next(d for d in document.definitions if isinstance(d, OperationDefinitionNode))
    fragments = {
        d.name.value: d for d in document.definitions if isinstance(d, FragmentDefinitionNode)
    }
    return plan_operation(operation, fragments, variables, ("local", "other"), 1000)


def ids(*values: str, paths: bool = False) -> JobScope:
    """Jobs by id, for a query that reads no output path unless `paths`."""
    return JobScope(ids=frozenset(values), paths=paths)


def lookup(*values: str, paths: bool = False) -> JobScope:
    """What Cluster.job reads: its ids, and accounting for those the controller forgot."""
    return JobScope(ids=frozenset(values), recall=True, paths=paths)


@pytest.mark.parametrize(
    ("query", "scope"),
    [
        ('{ cluster { job(id: "42") { displayId name } } }', lookup("42")),
        # An array task, a pending remainder or a het component: by the leading job id.
        ('{ cluster { job(id: "42_3") { displayId } } }', lookup("42")),
        ('{ cluster { job(id: "42_[4-9%2]") { displayId } } }', lookup("42")),
        ('{ cluster { job(id: "42+1") { displayId } } }', lookup("42")),
        ('{ cluster { a: job(id: "1") { jobId } b: job(id: "2") { jobId } } }', lookup("1", "2")),
        ('{ cluster { jobs(filter: {ids: ["7", "8_1"]}) { totalCount } } }', ids("7", "8")),
        (
            '{ cluster { jobs(filter: {users: ["alice"], states: [RUNNING]}) { totalCount } } }',
            JobScope(users=frozenset({"alice"}), states=frozenset({"RUNNING"})),
        ),
        (
            '{ cluster { jobs(filter: {users: "alice"}) { totalCount } } }',
            JobScope(users=frozenset({"alice"})),
        ),
        (
            '{ cluster { jobs(filter: {partitions: ["batch"]}) { totalCount } } }',
            JobScope(partitions=frozenset({"batch"})),
        ),
        # The same jobs twice: one scope.
        (
            '{ cluster { a: jobs(filter: {users: ["bob"]}) { totalCount } '
            'b: jobs(filter: {users: ["bob"]}) { totalCount } } }',
            JobScope(users=frozenset({"bob"})),
        ),
        # A partition's own listing is that partition's jobs, its filter narrowed to it.
        (
            '{ cluster { partition(name: "batch") { jobs { totalCount } } } }',
            JobScope(partitions=frozenset({"batch"})),
        ),
        (
            '{ cluster { partition(name: "batch") { name jobs(filter: {users: ["al"], '
            'partitions: ["debug"]}) { totalCount } } } }',
            JobScope(users=frozenset({"al"}), partitions=frozenset({"batch"})),
        ),
        # A fragment on Cluster is the Cluster's own field.
        ('{ cluster { ...C } } fragment C on Cluster { job(id: "5") { displayId } }', lookup("5")),
        # Output paths or patterns anywhere in the query: squeue's rows, which carry patterns.
        ('{ cluster { job(id: "5") { stdoutPath } } }', lookup("5", paths=True)),
        (
            '{ cluster { job(id: "5") { ...J } } } fragment J on Job { output { text } }',
            lookup("5", paths=True),
        ),
        (
            '{ cluster { a: job(id: "1") { jobId } b: job(id: "2") { stderrPattern } } }',
            lookup("1", "2", paths=True),
        ),
    ],
)
def test_what_squeue_is_asked_for(query: str, scope: JobScope) -> None:
    """Each Cluster-level job field becomes the scope squeue is asked for."""
    found = plan(query)
    assert found.scope_of("local") == scope
    assert Need.JOBS in found.needs_of("local")


@pytest.mark.parametrize(
    "query",
    [
        "{ cluster { jobs { totalCount } } }",
        '{ cluster { job(id: "1") { displayId } jobs(first: 1) { totalCount } } }',
        '{ cluster { job(id: "1") { nodes { jobs { displayId } } } } }',
        '{ cluster { job(id: "1") { displayId } partitions { jobs { totalCount } } } }',
        '{ cluster { job(id: "1") { jobId } partition(name: "batch") { jobs { totalCount } } } }',
        '{ cluster { partition(name: "a,b") { jobs { totalCount } } } }',
        '{ cluster { partition(name: "batch") { jobs { edges { node { nodes { jobs { jobId } } } } '
        "} } } }",
        '{ cluster { jobs(filter: {names: ["x"]}) { totalCount } } }',
        '{ cluster { jobs(filter: {users: ["a,b"]}) { totalCount } } }',
        '{ cluster { jobs(filter: {users: ["$(id)"]}) { totalCount } } }',
        '{ cluster { jobs(filter: {partitions: ["batch debug"]}) { totalCount } } }',
        "{ cluster { jobs(filter: {states: [UNKNOWN]}) { totalCount } } }",
        '{ cluster { job(id: "1") { displayId } jobs(filter: {users: ["bob"]}) { totalCount } } }',
        '{ cluster { a: jobs(filter: {users: ["a"]}) { totalCount } '
        'b: jobs(filter: {users: ["b"]}) { totalCount } } }',
    ],
)
def test_anything_squeue_cannot_select_exactly_reads_every_job(query: str) -> None:
    """A node's or a partition's jobs, name filters, values squeue would read differently,
    and different kinds of selection in one query: the whole queue."""
    assert plan(query).scope_of("local") == EVERY_JOB


def test_a_node_s_jobs_read_the_active_states_and_partitions_their_filter() -> None:
    """Node.jobs shows the jobs holding the node (Snapshot.jobs_on_node): those states only,
    wherever the node is reached from; every partition's jobs read what their filter selects."""
    for query in (
        "{ cluster { nodes { jobs { id } } } }",
        '{ cluster { partition(name: "batch") { nodes { jobs { id } } } } }',
        "{ cluster { partitions { nodes { jobs { id } } } } }",
        # A hostlist, a list, an option, a localhost squeue would map: not pushed (argv only).
        '{ cluster { node(name: "n[1-2]") { jobs { id } } } }',
        '{ cluster { node(name: "n1,n2") { jobs { id } } } }',
        '{ cluster { node(name: "-n1") { jobs { id } } } }',
        '{ cluster { node(name: "n1 --all") { jobs { id } } } }',
        '{ cluster { node(name: "localhost") { jobs { id } } } }',
    ):
        assert plan(query).scope_of("local") == JobScope(states=ACTIVE_JOB_STATES), query
    on_n1 = JobScope(states=ACTIVE_JOB_STATES, nodes=frozenset({"n1"}))
    assert plan('{ cluster { node(name: "n1") { jobs { id } } } }').scope_of("local") == on_n1
    # Two nodes' jobs in one query: their scopes differ, so the whole queue.
    both = '{ cluster { a: node(name: "n1") { jobs { id } } b: node(name: "n2") { jobs { id } } } }'
    assert plan(both).scope_of("local") == EVERY_JOB
    query = '{ cluster { partitions { jobs(filter: {users: ["bob"]}) { totalCount } } } }'
    assert plan(query).scope_of("local") == JobScope(users=frozenset({"bob"}))


def test_too_many_ids_read_the_queue() -> None:
    """Up to MAX_LISTED_IDS ids are pushed (one squeue each up to MAX_PUSHED_IDS, then one
    squeue listing them); more read the whole queue instead."""
    many = [str(n) for n in range(1, MAX_LISTED_IDS + 2)]
    query = "query($ids: [String!]) { cluster { jobs(filter: {ids: $ids}) { totalCount } } }"
    assert plan(query, ids=many[:-1]).scope_of("local") == ids(*many[:-1])
    assert plan(query, ids=many).scope_of("local") == EVERY_JOB


def test_ids_past_the_pushed_ones_are_one_squeue() -> None:
    """20 ids are 20 squeues of one id each; 21 are one squeue naming them all."""
    numbers = [str(n) for n in range(1, MAX_PUSHED_IDS + 2)]

    def jobs_options(count: int) -> list[str]:
        batch, _ = _batch_for(Need.JOBS, JobScope(ids=frozenset(numbers[:count])))
        return [a for command in batch for a in command.argv if a.startswith("--jobs=")]

    assert jobs_options(MAX_PUSHED_IDS) == [f"--jobs={n}" for n in numbers[:-1]]
    assert jobs_options(MAX_PUSHED_IDS + 1) == ["--jobs=" + ",".join(numbers)]


def test_nodes_and_partitions_need_no_jobs() -> None:
    """No job field anywhere: no job dataset."""
    found = plan("{ clusters { nodes { name partitions { name nodes { name } } } } }")
    assert Need.JOBS not in found.needs_of("local")


def test_own_visibility_narrows_every_scope_to_the_owner() -> None:
    """Under `own` a scope is the owner's jobs alone, whatever users it named; `all` and
    administrators keep it as planned."""
    bob = Visibility.of(Identity("bob"), own_jobs_only=True)
    asked = JobScope(users=frozenset({"alice"}), states=frozenset({"RUNNING"}))
    assert asked.seen_by(bob) == JobScope(users=frozenset({"bob"}), states=frozenset({"RUNNING"}))
    assert EVERY_JOB.seen_by(bob) == JobScope(users=frozenset({"bob"}))
    assert ids("4").seen_by(bob) == JobScope(
        ids=frozenset({"4"}), users=frozenset({"bob"}), paths=False
    )
    assert asked.seen_by(EVERYONE) == asked
    admin = Visibility.of(Identity("carol", admin=True), own_jobs_only=True)
    assert asked.seen_by(admin) == asked


def test_covers_and_merged() -> None:
    """A scope covers the narrower ones; ids join; other differences read every job."""
    alice = JobScope(users=frozenset({"alice"}))
    alice_running = JobScope(users=frozenset({"alice"}), states=frozenset({"RUNNING"}))
    assert alice.covers(alice_running) and not alice_running.covers(alice)
    assert EVERY_JOB.covers(alice) and not alice.covers(EVERY_JOB)
    assert alice.merged(alice_running) == alice
    assert ids("1").merged(ids("2")) == ids("1", "2")
    assert ids("1").merged(alice) == EVERY_JOB
    # Rows without squeue's output patterns never serve a query that reads them.
    with_paths, without = ids("1", paths=True), ids("1")
    assert with_paths.covers(without) and not without.covers(with_paths)
    assert without.merged(ids("2", paths=True)) == ids("1", "2", paths=True)


def scan(rows: tuple[JobRow, ...], wanted: str) -> JobRow | None:
    """job(id) as it was before the index: two scans of the listing."""
    for row in rows:
        if row.display_id == wanted or str(row.job_id) == wanted:
            return row
    for row in rows:
        if job_matches_id(row.fields(), wanted):
            return row
    return None


def test_the_id_index_answers_as_the_scan_did() -> None:
    """For every id form the real capture holds (display ids, unique ids, array ids) and for
    unknown ones, job(id) and an ids filter give what scanning gave."""
    snapshot = Snapshot("local", 1.0, Need.JOBS, jobs=tuple(reversed(golden_rows())))
    rows = snapshot.jobs_sorted
    forms = {row.display_id for row in rows} | {str(row.job_id) for row in rows}
    forms |= {str(r.fields().array_job_id) for r in rows if r.fields().array_job_id}
    assert any("_" in form for form in forms)
    for wanted in [*sorted(forms), "987654321", "1_1"]:
        assert snapshot.job(wanted) == scan(rows, wanted), wanted
        criteria = JobCriteria(ids=(wanted,))
        assert snapshot.jobs_matching(criteria) == tuple(filter_jobs(rows, ids=(wanted,)))
    several = tuple(sorted(forms))[:5]
    assert snapshot.jobs_matching(JobCriteria(ids=several)) == tuple(filter_jobs(rows, ids=several))


def test_lookups_use_the_index_once_built() -> None:
    """The index is a declared field of the snapshot's Indexes, built on first use."""
    snapshot = Snapshot("local", 1.0, Need.JOBS, jobs=tuple(golden_rows()))
    assert snapshot.indexes.jobs_by_id is None
    first = snapshot.jobs_sorted[0]
    assert snapshot.job(first.display_id) == first
    index = snapshot.indexes.jobs_by_id
    assert index is not None
    snapshot.job(str(first.job_id))
    assert snapshot.indexes.jobs_by_id is index


def test_a_partial_snapshot_knows_its_scope() -> None:
    """scope_of_job is what a snapshot fetched for job(id) records (resolvers/source.py keys
    its cache by it)."""
    assert scope_of_job("12_[3-6%2]") == ids("12", paths=True)
    assert not scope_of_job("1").everything and EVERY_JOB.everything


def test_a_lookup_recalls_for_its_requester_alone() -> None:
    """A lookup's scope, once bound to a requester, is covered (its snapshot served or its
    fetch joined) only by a scope recalling for the same requester: one user's accounting
    answer never serves another; a scope that does not recall never stands in for one."""
    alice, bob = lookup("42").asked_by("alice"), lookup("42").asked_by("bob")
    assert alice.requester == "alice" and ids("42").asked_by("alice") == ids("42")
    assert not alice.covers(bob) and not bob.covers(alice)
    assert alice.covers(alice) and alice.covers(ids("42"))
    assert not ids("42").covers(alice) and not EVERY_JOB.covers(alice)
    assert lookup("1").merged(ids("2")) == lookup("1", "2")
    assert alice.merged(bob) == EVERY_JOB
