"""Fetch plans on the real cluster: each query asks Slurm for what it reads, in one round trip,
and answers exactly as it would from the full queue. Commands are counted through the
CountingTransport under the app (argv per batch)."""

from __future__ import annotations

import asyncio
import dataclasses
import gc
import time
import weakref
from collections.abc import AsyncIterator
from typing import Any

import pytest

from resolvers.scope import MAX_PUSHED_IDS, scope_of_job
from resolvers.snapshot import Need
from resolvers.source import FULL_AFTER_PARTIALS, SnapshotSource
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS, Api
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.scenario import OTHER_USER, Scenario
from transport.base import Command
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

JOB = "displayId jobId arrayJobId arrayTaskId name user state partition { name } nodeList"
# Asking for every job as well turns any plan into the full queue: the reference answer.
EVERY_JOB = "everything: jobs(first: 0) { totalCount }"


class Counted(Api):
    """tests.conftest's Api, answering data only (an error fails the test), with the squeue
    commands it ran."""

    async def query(self, query: str, **variables: Any) -> dict[str, Any]:
        body = await super().query(query, **variables)
        assert "errors" not in body, body
        data: dict[str, Any] = body["data"]
        return data

    def squeues(self, since: int = 0) -> list[tuple[str, ...]]:
        return [
            argv
            for batch in self.transport.batches[since:]
            for argv in batch
            if argv[0] == "squeue"
        ]


def options(argv: tuple[str, ...]) -> list[str]:
    """The options a plan adds to the full-queue squeue."""
    return [
        a for a in argv if a.startswith(("--jobs=", "--user=", "--partition=", "--nodelist="))
    ] + [a for a in argv if a.startswith("--states=") and a != "--states=all"]


def ours(data: dict[str, Any], scenario: Scenario) -> list[dict[str, Any]]:
    """The scenario's jobs in a listing, in its order."""
    mine = set(scenario.all_ids)
    return [
        edge["node"]
        for edge in data["cluster"]["jobs"]["edges"]
        if str(edge["node"]["jobId"]) in mine or str(edge["node"]["arrayJobId"]) in mine
    ]


async def _counted(ttl: float) -> AsyncIterator[Counted]:
    transport = CountingTransport(LocalTransport())
    settings = Settings(clusters=(("local", "local://"),), cache_ttl=ttl, response_cache=False)
    async with app_client(settings, {"local": transport}) as client:
        yield Counted(client, transport)


@pytest.fixture(params=[0.0, 60.0], ids=["cache-off", "cache-60s"])
async def counted(request: pytest.FixtureRequest, scenario: Scenario) -> AsyncIterator[Counted]:
    """The app over the real cluster, its commands counted, with the snapshot cache off and on."""
    async for made in _counted(request.param):
        yield made


@pytest.fixture
async def uncached(scenario: Scenario) -> AsyncIterator[Counted]:
    """As `counted`, cache off: to compare a plan's answer with the full queue's right after."""
    async for made in _counted(0.0):
        yield made


async def test_job_by_id_asks_squeue_for_that_job_only(
    counted: Counted, scenario: Scenario
) -> None:
    """job(id) is one batch with one squeue --jobs=<id>, and answers as the full queue does."""
    query = f'{{ cluster {{ job(id: "{scenario.held}") {{ {JOB} }} }} }}'
    found = await counted.query(query)
    assert counted.transport.calls == 1
    [squeue] = counted.squeues()
    assert options(squeue) == [f"--jobs={scenario.held}"]
    reference = await counted.query(query.replace("} } }", f"}} {EVERY_JOB} }} }}", 1))
    assert options(counted.squeues()[-1]) == []
    assert found["cluster"]["job"] == reference["cluster"]["job"]
    assert found["cluster"]["job"]["displayId"] == scenario.held


async def test_a_job_by_id_is_a_session_lookup_unless_it_reads_output_paths(
    uncached: Counted, scenario: Scenario
) -> None:
    """The same squeue is planned; without output paths in the query, a scontrol session may
    answer it (local://) and did, with the row squeue gives; with them, squeue runs."""
    inner = uncached.transport.inner
    assert isinstance(inner, LocalTransport)
    stats = inner.session_stats
    assert stats is not None
    answered = stats.answered
    fields = "displayId jobId arrayJobId arrayTaskId name user state nodeList exitCode command"
    query = f'{{ cluster {{ job(id: "{scenario.held}") {{ {fields} }} }} }}'
    looked_up = await uncached.query(query)
    [[command]] = uncached.transport.sent[-1:]
    assert command.interactive is not None and command.argv[0] == "squeue"
    assert stats.answered == answered + 1
    with_paths = await uncached.query(query.replace("command", "command stdoutPath"))
    [command] = [c for c in uncached.transport.sent[-1] if c.argv[0] == "squeue"]
    assert command.interactive is None  # a process: a session answers interactive ones only
    assert with_paths["cluster"]["job"].pop("stdoutPath")
    assert looked_up == with_paths


async def test_array_ids_ask_for_the_whole_array(uncached: Counted, scenario: Scenario) -> None:
    """`42`, `42_1` and a pending remainder's `42_[2-3]` each ask squeue for array 42 (squeue
    would invent a row for a task still pending in the remainder), and answer as the full
    queue does; an ids filter naming two forms of it asks once."""
    array = scenario.array
    reference = await uncached.query(
        "query($id: String!) { cluster { jobs(filter: {ids: [$id]}) { edges { node { "
        f"{JOB} }} }} }} {EVERY_JOB} }} }}",
        id=array,
    )
    rows = [e["node"] for e in reference["cluster"]["jobs"]["edges"]]
    forms = [r["displayId"] for r in rows if r["displayId"].startswith(f"{array}_")]
    assert forms
    for form in [array, *forms]:
        before = len(uncached.squeues())
        found = await uncached.query(
            "query($id: String!) { cluster { job(id: $id) { displayId } "
            "jobs(filter: {ids: [$id]}) { edges { node { displayId } } } } }",
            id=form,
        )
        assert [options(s) for s in uncached.squeues(0)[before:]] == [[f"--jobs={array}"]]
        listed = [e["node"]["displayId"] for e in found["cluster"]["jobs"]["edges"]]
        named = [r["displayId"] for r in rows if form in (r["displayId"], str(r["jobId"]))]
        assert listed == named or (form == array and listed == forms)


async def test_many_ids_are_one_squeue_listing_them(uncached: Counted, scenario: Scenario) -> None:
    """Past MAX_PUSHED_IDS, an ids filter is one squeue naming every id (unknown ones, and
    jobs Slurm has forgotten, simply absent), answered as from the full queue."""
    unknown = [str(90_000_000 + n) for n in range(MAX_PUSHED_IDS)]
    wanted = sorted({*scenario.all_ids, *unknown}, key=int)
    listing = (
        f"jobs(filter: {{ids: $ids}}, first: 500) {{ totalCount edges {{ node {{ {JOB} }} }} }}"
    )
    query = f"query($ids: [String!]) {{ cluster {{ {listing} }} }}"
    found = await uncached.query(query, ids=wanted)
    assert options(uncached.squeues()[-1]) == ["--jobs=" + ",".join(wanted)]
    everything = f"query($ids: [String!]) {{ cluster {{ {listing} {EVERY_JOB} }} }}"
    reference = await uncached.query(everything, ids=wanted)
    assert options(uncached.squeues()[-1]) == []
    del reference["cluster"]["everything"]
    assert found == reference
    assert ours(found, scenario)


async def test_filters_become_squeue_options(uncached: Counted, scenario: Scenario) -> None:
    """users, states and partitions are squeue's --user, --states and --partition; names stay
    ours. Each answer equals the one computed from the full queue."""
    cases = [
        (f'{{users: ["{OTHER_USER}"]}}', [f"--user={OTHER_USER}"]),
        ("{states: [PENDING, FAILED]}", ["--states=FAILED,PENDING"]),
        ('{partitions: ["batch"], states: [RUNNING]}', ["--partition=batch", "--states=RUNNING"]),
        ('{names: ["held"]}', []),
        # squeue has no UNKNOWN state: the filter is ours alone.
        ("{states: [UNKNOWN, RUNNING]}", []),
    ]
    for job_filter, pushed in cases:
        listing = (
            f"jobs(filter: {job_filter}, first: 500) {{ totalCount edges {{ node {{ {JOB} }} }} }}"
        )
        found = await uncached.query(f"{{ cluster {{ {listing} }} }}")
        assert options(uncached.squeues()[-1]) == pushed, job_filter
        reference = await uncached.query(f"{{ cluster {{ {listing} {EVERY_JOB} }} }}")
        assert options(uncached.squeues()[-1]) == []
        # Other tests share the cluster: compare on the scenario's jobs, which stay as they are.
        assert ours(found, scenario) == ours(reference, scenario), job_filter
        assert ours(found, scenario), job_filter


async def test_a_partitions_listing_asks_for_its_jobs(
    uncached: Counted, scenario: Scenario
) -> None:
    """partition(name) { jobs } is squeue --partition=<name>, filtered as the full queue is."""
    listing = (
        'partition(name: "batch") { jobs(filter: {states: [RUNNING, PENDING]}, first: 500) { '
        f"totalCount edges {{ node {{ {JOB} }} }} }} }}"
    )
    found = await uncached.query(f"{{ cluster {{ {listing} }} }}")
    assert options(uncached.squeues()[-1]) == ["--partition=batch", "--states=PENDING,RUNNING"]
    reference = await uncached.query(f"{{ cluster {{ {listing} {EVERY_JOB} }} }}")
    assert options(uncached.squeues()[-1]) == []
    mine = [ours({"cluster": r["cluster"]["partition"]}, scenario) for r in (found, reference)]
    assert mine[0] == mine[1] and mine[0]


async def test_nodes_and_partitions_alone_never_read_the_queue(counted: Counted) -> None:
    """A query of nodes and partitions runs no squeue."""
    await counted.query(
        "{ cluster { nodes { name state partitions { name } } partitions { name totalNodes "
        'nodes { name cpus } } node(name: "n1") { name } } }'
    )
    assert counted.transport.calls == 1
    assert counted.squeues() == []


ACTIVE = "--states=COMPLETING,CONFIGURING,RESIZING,RUNNING,SIGNALING,STOPPED,SUSPENDED"


async def test_a_node_s_jobs_read_the_active_jobs_only(
    uncached: Counted, scenario: Scenario
) -> None:
    """Nodes' jobs (running, completing, …: the jobs holding nodes) are one squeue of those
    states, answered as from the full queue (once the cluster's size is known: a query costed
    on assumptions reads everything first, server/limits.py)."""
    await uncached.query(f"{{ cluster {{ nodes {{ name }} {EVERY_JOB} }} }}")
    running = await uncached.query(
        f'{{ cluster {{ job(id: "{scenario.running}") {{ nodeList }} }} }}'
    )
    node = running["cluster"]["job"]["nodeList"]  # one node: the scenario's job runs on one
    for nodes, pushed in (
        ("nodes { name jobs { id user state } }", [ACTIVE]),
        (f'node(name: "{node}") {{ jobs {{ id }} }}', [f"--nodelist={node}", ACTIVE]),
        ('node(name: "n4") { jobs { id state } }', ["--nodelist=n4", ACTIVE]),
    ):
        found = await uncached.query(f"{{ cluster {{ {nodes} }} }}")
        assert [options(s) for s in uncached.squeues()[-1:]] == [pushed]
        reference = await uncached.query(f"{{ cluster {{ {nodes} {EVERY_JOB} }} }}")
        assert options(uncached.squeues()[-1]) == []
        del reference["cluster"]["everything"]
        assert found == reference
    found = await uncached.query("{ cluster { nodes { jobs { id } } } }")
    assert any(node["jobs"] for node in found["cluster"]["nodes"])  # the scenario's running job
    on_node = await uncached.query(f'{{ cluster {{ node(name: "{node}") {{ jobs {{ id }} }} }} }}')
    assert on_node["cluster"]["node"]["jobs"]


async def test_an_unknown_node_s_jobs_are_no_error(uncached: Counted, scenario: Scenario) -> None:
    """squeue --nodelist of a node that does not exist fails ("Invalid node name"): the node is
    null, as from the full queue, and nothing fails."""
    found = await uncached.query('{ cluster { node(name: "nosuchnode") { jobs { id } } } }')
    assert found == {"cluster": {"node": None}}
    assert [options(s) for s in uncached.squeues()[-1:]] == [["--nodelist=nosuchnode", ACTIVE]]


async def test_every_partition_s_jobs_read_what_their_filter_selects(
    uncached: Counted, scenario: Scenario
) -> None:
    """partitions { jobs(filter) } asks squeue for the filter's jobs, in every partition."""
    await uncached.query(f"{{ cluster {{ partitions {{ name }} {EVERY_JOB} }} }}")
    listing = (
        f'partitions {{ name jobs(filter: {{users: ["{OTHER_USER}"]}}, first: 500) '
        f"{{ totalCount edges {{ node {{ {JOB} }} }} }} }}"
    )
    found = await uncached.query(f"{{ cluster {{ {listing} }} }}")
    assert options(uncached.squeues()[-1]) == [f"--user={OTHER_USER}"]
    reference = await uncached.query(f"{{ cluster {{ {listing} {EVERY_JOB} }} }}")
    assert options(uncached.squeues()[-1]) == []
    assert found["cluster"]["partitions"] == reference["cluster"]["partitions"]
    assert any(p["jobs"]["totalCount"] for p in found["cluster"]["partitions"])


async def test_a_query_needing_everything_reads_the_full_queue_once(
    counted: Counted, scenario: Scenario
) -> None:
    """job(id) beside an unfiltered listing or a partition's jobs: one full squeue, one batch,
    however deep the query is."""
    for other in (
        "jobs(first: 5) { edges { node { displayId } } }",
        "partitions { jobs(first: 5) { totalCount } }",
        f'jobs(filter: {{users: ["{OTHER_USER}"]}}) {{ totalCount }}',
    ):
        before = counted.transport.calls
        await counted.query(
            f'{{ cluster {{ job(id: "{scenario.running}") {{ displayId nodes {{ name partitions '
            f"{{ name nodes {{ name }} }} }} }} {other} }} }}"
        )
        # With the cache on, the first full snapshot answers the others.
        assert counted.transport.calls <= before + 1
        assert [options(s) for s in counted.squeues()] == [[]] * len(counted.squeues()), other
    assert counted.transport.calls >= 1


async def test_ids_lookups_join_in_one_batch(counted: Counted, scenario: Scenario) -> None:
    """Several job(id) aliases are one batch of one squeue per id; an unknown id is null, in the
    same round trip: its lookup asks accounting whether Slurm forgot it (issue 14)."""
    found = await counted.query(
        f'{{ cluster {{ a: job(id: "{scenario.held}") {{ displayId }} '
        f'b: job(id: "{scenario.failed}") '
        '{ displayId } c: job(id: "987654321") { displayId } } }'
    )
    assert counted.transport.calls == 1
    assert sorted(options(s)[0] for s in counted.squeues()) == sorted(
        f"--jobs={i}" for i in (scenario.held, scenario.failed, "987654321")
    )
    assert found["cluster"] == {
        "a": {"displayId": scenario.held},
        "b": {"displayId": scenario.failed},
        "c": None,
    }


async def test_a_fresh_full_snapshot_answers_lookups(scenario: Scenario) -> None:
    """With the cache on, a lookup after a full listing costs no round trip; a partial
    snapshot answers only its own plan: another id, or a listing, asks Slurm again."""
    transport = CountingTransport(LocalTransport())
    settings = Settings(clusters=(("local", "local://"),), cache_ttl=60.0, response_cache=False)
    async with app_client(settings, {"local": transport}) as client:
        counted = Counted(client, transport)
        lookup = "query($id: String!) { cluster { job(id: $id) { displayId state } } }"
        await counted.query(lookup, id=scenario.held)
        await counted.query(lookup, id=scenario.held)
        assert transport.calls == 1  # the same plan: its partial snapshot, cached
        await counted.query(lookup, id=scenario.failed)
        assert transport.calls == 2 and options(counted.squeues()[-1]) == [
            f"--jobs={scenario.failed}"
        ]
        listing = await counted.query("{ cluster { jobs(first: 500) { totalCount } } }")
        assert transport.calls == 3 and options(counted.squeues()[-1]) == []
        assert listing["cluster"]["jobs"]["totalCount"] >= len(scenario.all_ids) - 2
        for job_id in (scenario.running, scenario.held, scenario.pending):
            assert (await counted.query(lookup, id=job_id))["cluster"]["job"]["displayId"] == job_id
        assert transport.calls == 3


async def test_partial_snapshots_never_tell_the_cluster_size(scenario: Scenario) -> None:
    """A lookup's one job is not the queue's length: what a query's cost is bounded by comes
    from full queues alone (else one job(id) would let a costly listing pass)."""
    source = SnapshotSource("local", LocalTransport())
    partial = await source.get(Need.JOBS | Need.NODES, scope_of_job(scenario.held))
    assert partial.jobs is not None and len(partial.jobs) == 1
    assert source.bounds.jobs is None and source.bounds.nodes is not None
    full = await source.get(Need.JOBS)
    assert full.jobs is not None and source.bounds.jobs == len(full.jobs) > 1
    await source.get(Need.JOBS, scope_of_job(scenario.held))
    assert source.bounds.jobs == len(full.jobs)


async def test_cached_answers_from_a_partial_snapshot_stay_with_their_query(
    scenario: Scenario,
) -> None:
    """With the response cache on, job(id: A) asked again is served without a command; job(id:
    B) is not answered from A's snapshot or result; a listing reads the whole queue."""
    transport = CountingTransport(LocalTransport())
    settings = Settings(clusters=(("local", "local://"),), cache_ttl=60.0, response_cache=True)
    async with app_client(settings, {"local": transport}) as client:
        counted = Counted(client, transport)
        lookup = "query($id: String!) { cluster { job(id: $id) { displayId name } } }"
        first = await counted.query(lookup, id=scenario.held)
        assert await counted.query(lookup, id=scenario.held) == first
        assert transport.calls == 1
        other = await counted.query(lookup, id=scenario.failed)
        assert other["cluster"]["job"]["displayId"] == scenario.failed and transport.calls == 2
        await counted.query("{ cluster { jobs(first: 1) { totalCount } } }")
        assert transport.calls == 3 and options(counted.squeues()[-1]) == []


async def test_a_write_drops_cached_partial_snapshots(unix_users: None) -> None:
    """alice renames her held job: her next job(id), within the cache TTL, shows the new name
    (the write forgot the partial snapshot her earlier lookup left in the cache)."""
    transport = CountingTransport(LocalTransport())
    settings = Settings(
        clusters=(("local", "local://"),), cache_ttl=60.0, tokens=parse_token_map(TOKENS)
    )
    alice = {"Authorization": "Bearer alice-token"}
    async with app_client(settings, {"local": transport}) as client:

        async def ask(query: str, **variables: Any) -> dict[str, Any]:
            response = await client.post(
                "/graphql", json={"query": query, "variables": variables}, headers=alice
            )
            body: dict[str, Any] = response.json()
            assert "errors" not in body, body
            data: dict[str, Any] = body["data"]
            return data

        submitted = await ask(
            "mutation($input: SubmitJobInput!) { submitJob(input: $input) { "
            "... on JobSubmitted { job { displayId } } } }",
            input={"script": "#!/bin/sh\ntrue\n", "name": "plans-before", "hold": True},
        )
        job_id = submitted["submitJob"]["job"]["displayId"]
        try:
            lookup = "query($id: String!) { cluster { job(id: $id) { name } } }"
            assert (await ask(lookup, id=job_id))["cluster"]["job"] == {"name": "plans-before"}
            await ask(
                'mutation($id: String!) { updateJob(id: $id, input: {name: "plans-after"}) { '
                "__typename } }",
                id=job_id,
            )
            assert (await ask(lookup, id=job_id))["cluster"]["job"] == {"name": "plans-after"}
        finally:
            await ask("mutation($id: String!) { cancelJob(id: $id) { __typename } }", id=job_id)


async def test_frequent_lookups_bring_in_a_full_snapshot(scenario: Scenario) -> None:
    """FULL_AFTER_PARTIALS partial fetches within one TTL start one full squeue in the
    background; from then on lookups are index reads of it, with no round trip. With the
    cache off, lookups stay partial."""
    transport = CountingTransport(LocalTransport())
    source = SnapshotSource("local", transport, ttl=60.0)
    for n in range(FULL_AFTER_PARTIALS):
        await source.get(Need.JOBS, scope_of_job(str(987654300 + n)))
    for _ in range(600):
        if source.fresh() is not None:
            break
        await asyncio.sleep(0.05)
    full = source.fresh()
    assert full is not None and full.scope.everything
    assert [options(s) for s in [b[0] for b in transport.batches]][-1] == []
    calls = transport.calls
    assert calls == FULL_AFTER_PARTIALS + 1
    assert await source.get(Need.JOBS, scope_of_job(scenario.held)) is full
    assert full.job(scenario.held) is not None and transport.calls == calls
    await source.aclose()

    uncached = SnapshotSource("local", transport, ttl=0.0)
    before = transport.calls
    for n in range(FULL_AFTER_PARTIALS + 1):
        await uncached.get(Need.JOBS, scope_of_job(str(987654300 + n)))
    assert transport.calls == before + FULL_AFTER_PARTIALS + 1
    assert all(options(b[0]) for b in transport.batches[before:])


async def test_expired_partial_snapshots_are_let_go(scenario: Scenario) -> None:
    """A partial snapshot past its TTL is dropped as soon as another is cached: after a burst
    of lookups, nothing of the old ones stays in memory."""
    now = [0.0]
    source = SnapshotSource("local", LocalTransport(), ttl=1.0, clock=lambda: now[0])
    first = await source.get(Need.JOBS, scope_of_job(scenario.held))
    assert await source.get(Need.JOBS, scope_of_job(scenario.held)) is first
    gone = weakref.ref(first)
    del first
    now[0] = 5.0
    await source.get(Need.JOBS, scope_of_job(scenario.failed))
    gc.collect()
    assert gone() is None


async def test_a_lookup_does_not_wait_for_a_whole_queue_under_way(scenario: Scenario) -> None:
    """While a full squeue is under way (made 3 s slow here, as 10,000 jobs on a busy head
    node are), job(id) runs its own squeue --jobs=<id> and answers at once."""

    def slow_full_queue(command: Command) -> Command:
        if command.argv[0] != "squeue" or any(a.startswith("--jobs=") for a in command.argv):
            return command
        argv = ("sh", "-c", 'sleep 3; exec "$@"', "sh", *command.argv)
        return dataclasses.replace(command, argv=argv)

    transport = CountingTransport(LocalTransport(), rewrite=slow_full_queue)
    source = SnapshotSource("local", transport, ttl=60.0)
    everything = asyncio.ensure_future(source.get(Need.JOBS))
    await asyncio.sleep(0.2)  # the full fetch is under way
    started = time.monotonic()
    found = await source.get(Need.JOBS, scope_of_job(scenario.held))
    assert time.monotonic() - started < 2.5
    assert found.job(scenario.held) is not None
    assert not everything.done()
    assert len((await everything).jobs or ()) >= len(scenario.all_ids) - 2
    await source.aclose()


async def test_lookups_stop_bringing_in_full_snapshots_that_come_too_late(
    scenario: Scenario,
) -> None:
    """When a full squeue takes half the TTL or more (made 1.5 s slow here, TTL 2 s), the full
    snapshot is nearly stale on arrival: frequent lookups bring in one, then keep to their own
    squeue --jobs instead of paying for another whole queue each TTL."""

    def slow_full_queue(command: Command) -> Command:
        if command.argv[0] != "squeue" or any(a.startswith("--jobs=") for a in command.argv):
            return command
        argv = ("sh", "-c", 'sleep 1.5; exec "$@"', "sh", *command.argv)
        return dataclasses.replace(command, argv=argv)

    transport = CountingTransport(LocalTransport(), rewrite=slow_full_queue)
    source = SnapshotSource("local", transport, ttl=2.0)

    def full_squeues() -> int:
        return sum(1 for b in transport.batches for argv in b if options(argv) == [])

    for n in range(FULL_AFTER_PARTIALS):
        await source.get(Need.JOBS, scope_of_job(str(987654300 + n)))
    for _ in range(100):
        if source.fresh() is not None:
            break
        await asyncio.sleep(0.05)
    assert full_squeues() == 1
    await asyncio.sleep(0.6)  # the full snapshot is stale: lookups fetch again
    for n in range(2 * FULL_AFTER_PARTIALS):
        found = await source.get(Need.JOBS, scope_of_job(str(987654400 + n)))
        assert not found.scope.everything
    await asyncio.sleep(0.1)
    assert full_squeues() == 1
    await source.aclose()


async def test_concurrent_identical_lookups_share_one_squeue(scenario: Scenario) -> None:
    """Ten requests for the same job at once, with the cache on or off, are one squeue --jobs
    between them (single flight), all answered with the job."""
    for ttl in (0.0, 60.0):
        transport = CountingTransport(LocalTransport())
        source = SnapshotSource("local", transport, ttl=ttl)
        found = await asyncio.gather(
            *(source.get(Need.JOBS, scope_of_job(scenario.held)) for _ in range(10))
        )
        assert all(snapshot is found[0] for snapshot in found)
        assert found[0].job(scenario.held) is not None
        assert transport.batches == [[transport.batches[0][0]]], ttl
        assert options(transport.batches[0][0]) == [f"--jobs={scenario.held}"]
        await source.aclose()
