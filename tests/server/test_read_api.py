"""The read API against the real local cluster, compared with Slurm's own JSON answer."""

from __future__ import annotations

import re
import subprocess
from datetime import datetime
from typing import Any

from resolvers.slurm.job_fields import split_comment
from server.settings import Settings
from tests.conftest import Api, Aws
from tests.support import oracle
from tests.support.app import app_client
from tests.support.scenario import (
    DRAIN_REASON,
    DRAINED_NODE,
    OTHER_USER,
    TRICKY_COMMENT,
    TRICKY_NAME,
    Scenario,
)
from transport import open_transport

JOB_FIELDS = """
  displayId jobId arrayJobId arrayTaskId name user account state reason submitTime startTime endTime
  timeLimitMinutes numNodes numCpus exitCode signal workDir stdoutPath stderrPath command
  stdoutPattern stderrPattern
  dependency priority comment clientMutationId nodeList qos partition { name } nodes { name }
"""


PLAIN_PATTERN = re.compile(r"[^%\\]*(%[AaJjux][^%\\]*)*")


async def all_jobs(api: Api) -> dict[int, dict[str, Any]]:
    body = await api.query(f"{{ cluster {{ jobs {{ edges {{ node {{ {JOB_FIELDS} }} }} }} }} }}")
    assert "errors" not in body, body
    return {e["node"]["jobId"]: e["node"] for e in body["data"]["cluster"]["jobs"]["edges"]}


def epoch(value: str | None) -> int | None:
    return None if value is None else int(datetime.fromisoformat(value).timestamp())


async def test_every_job_matches_squeue_json(api: Api, scenario: Scenario) -> None:
    """Each job field equals what `squeue --json` (Slurm's own serializer) says."""
    ours = await all_jobs(api)
    theirs = {job["job_id"]: job for job in oracle.squeue_json()}
    assert set(ours) == set(theirs)
    for job_id, slurm in theirs.items():
        job = ours[job_id]
        assert_job_matches(job, slurm)


def assert_job_matches(job: dict[str, Any], slurm: dict[str, Any]) -> None:
    __tracebackhide__ = True
    try:
        assert job["name"] == slurm["name"]
        assert job["user"] == slurm["user_name"]
        assert job["state"] == oracle.first_state(slurm["job_state"])
        assert job["partition"]["name"] == slurm["partition"].split(",")[0]
        # Slurm's JSON has null counts for some jobs that never ran; squeue prints the request.
        if slurm["cpus"] is not None:
            assert job["numCpus"] == oracle.number(slurm["cpus"])
        if slurm["node_count"] is not None:
            assert job["numNodes"] == oracle.number(slurm["node_count"])
        assert job["timeLimitMinutes"] == oracle.number(slurm["time_limit"])
        assert epoch(job["submitTime"]) == oracle.number(slurm["submit_time"])
        assert job["workDir"] == slurm["current_working_directory"]
        # A submitJob idempotency key is kept in Slurm's comment, ahead of the client's text.
        comment, key = split_comment(slurm["comment"] or None)
        assert (job["comment"], job["clientMutationId"]) == (comment, key)
        assert (job["exitCode"], job["signal"]) == oracle.exit_code(slurm["exit_code"])
        assert epoch(job["startTime"]) == (oracle.number(slurm["start_time"]) or None)
        if job["timeLimitMinutes"] is None and job["state"] == "RUNNING":
            # Slurm's JSON puts an unlimited job's end a year after its start; squeue: Unknown.
            assert job["endTime"] is None
        else:
            assert epoch(job["endTime"]) == (oracle.number(slurm["end_time"]) or None)
        assert job["priority"] == oracle.number(slurm["priority"])
        # squeue prints Slurm's description of the reason when it has one (a requeued, held
        # job: "job requeued in held state"), else the reason code.
        reason = slurm.get("state_description") or slurm["state_reason"]
        assert job["reason"] == (None if reason == "None" else reason)
        # Slurm's JSON holds the pattern on 22.05 (empty when defaulted) and the expanded path
        # on 24.11 (the default included); we answer both, the same on every version. 24.11's
        # JSON expands escapes, widths and %% unlike slurmstepd (golden output-files/), so
        # only plain patterns are compared with it.
        # The pending rest of an array writes no file yet (we answer null); 24.11's JSON names
        # one with Slurm's "no value" task id (slurm-N_4294967294.out): not compared.
        pending_rest = job["stdoutPath"] is None and slurm["array_task_string"]
        plain = PLAIN_PATTERN.fullmatch(job["stdoutPattern"] or "")
        if slurm["standard_output"] and plain and not pending_rest:
            assert slurm["standard_output"] in (job["stdoutPattern"], job["stdoutPath"])
        assert job["arrayJobId"] == (oracle.number(slurm["array_job_id"]) or None)
        task = oracle.number(slurm["array_task_id"])
        assert job["arrayTaskId"] == (str(task) if task is not None else None) or (
            slurm["array_task_string"] or None
        )
        assert (job["dependency"] or "") == slurm["dependency"]
        assert (job["command"] or "") == slurm["command"]
        assert (job["account"] or "") == slurm["account"]
        if oracle.first_state(slurm["job_state"]) == "RUNNING":
            assert job["nodeList"] == slurm["nodes"]
    except AssertionError as failure:
        shown = job["displayId"]
        raise AssertionError(f"job {shown}: {failure}\nours: {job}\nslurm: {slurm}") from None


async def test_the_scenario_reads_back_as_submitted(api: Api, scenario: Scenario) -> None:
    """Every kind of job in the scenario has the fields its submission implies."""
    jobs = await all_jobs(api)
    running = jobs[int(scenario.running)]
    assert running["name"] == TRICKY_NAME
    assert running["comment"] == TRICKY_COMMENT
    assert running["state"] == "RUNNING"
    assert running["partition"]["name"] == "debug"
    assert running["timeLimitMinutes"] == 30
    assert len(running["nodes"]) == 1
    assert epoch(running["startTime"]) is not None
    assert running["reason"] is None

    assert jobs[int(scenario.failed)]["state"] == "FAILED"
    assert jobs[int(scenario.failed)]["exitCode"] == 3
    assert jobs[int(scenario.completed)]["state"] == "COMPLETED"
    assert jobs[int(scenario.completed)]["exitCode"] == 0
    assert jobs[int(scenario.cancelled)]["state"] == "CANCELLED"
    assert jobs[int(scenario.held)]["reason"] == "JobHeldUser"
    assert jobs[int(scenario.pending)]["reason"] == "BeginTime"
    assert jobs[int(scenario.dependent)]["reason"] == "Dependency"
    assert f"afterok:{scenario.running}" in jobs[int(scenario.dependent)]["dependency"]
    assert jobs[int(scenario.unlimited)]["timeLimitMinutes"] is None
    assert jobs[int(scenario.other_user)]["user"] == OTHER_USER
    assert "\ufffd" in jobs[int(scenario.invalid_utf8)]["name"]

    tasks = [j for j in jobs.values() if j["arrayJobId"] == int(scenario.array)]
    running_tasks = [t for t in tasks if t["state"] == "RUNNING"]
    pending_rest = [t for t in tasks if t["state"] == "PENDING"]
    assert len(running_tasks) == 2
    assert {t["displayId"] for t in running_tasks} == {
        f"{scenario.array}_{t['arrayTaskId']}" for t in running_tasks
    }
    assert [t["displayId"] for t in pending_rest] == [f"{scenario.array}_[3-6%2]"]
    assert pending_rest[0]["arrayTaskId"] == "3-6%2"


async def test_nodes_match_slurms_json(api: Api, scenario: Scenario) -> None:
    """Each node's resources, state flags, reason and partitions equal Slurm's own JSON."""
    body = await api.query(
        """{ cluster { nodes { name state stateFlags reason reasonSetBy cpus cpusAllocated
             realMemoryMb allocatedMemoryMb features partitions { name } } } }"""
    )
    ours = {n["name"]: n for n in body["data"]["cluster"]["nodes"]}
    theirs = {n["name"]: n for n in oracle.nodes_json()}
    assert set(ours) == set(theirs) == {"n1", "n2", "n3", "n4"}
    for name, slurm in theirs.items():
        node = ours[name]
        assert node["cpus"] == oracle.number(slurm["cpus"])
        assert node["cpusAllocated"] == oracle.number(slurm["alloc_cpus"])
        assert node["realMemoryMb"] == oracle.number(slurm["real_memory"])
        assert node["allocatedMemoryMb"] == oracle.number(slurm["alloc_memory"])
        assert node["features"] == oracle.as_list(slurm["features"])
        assert sorted(p["name"] for p in node["partitions"]) == sorted(slurm["partitions"])
        # A reason shows only while the node is out of service; 24.11's JSON keeps a resumed
        # node's old one for a while (a node-event test may have just resumed n3).
        out = node["state"] in ("DOWN", "DRAINED", "DRAINING", "FAIL", "FAILING")
        assert (node["reason"] or "") == (slurm["reason"] if out else "")
    drained = ours[DRAINED_NODE]
    assert drained["state"] == "DRAINED"
    assert "DRAIN" in drained["stateFlags"]
    assert drained["reason"] == DRAIN_REASON
    assert drained["reasonSetBy"] == "root"


async def test_partitions_and_relations(api: Api, scenario: Scenario) -> None:
    """Partitions carry their limits; partition→nodes, node→jobs and job→partition agree."""
    body = await api.query(
        """{ cluster { partitions { name state isDefault maxTimeMinutes totalCpus totalNodes
               nodes { name }
               jobs(filter: {states: [RUNNING]}) { totalCount edges { node { displayId } } } }
             node(name: "n1") { name jobs { jobId partition { name } } } } }"""
    )
    assert "errors" not in body, body
    cluster = body["data"]["cluster"]
    partitions = {p["name"]: p for p in cluster["partitions"]}
    assert set(partitions) == {"debug", "batch"}
    assert partitions["debug"]["isDefault"] and not partitions["batch"]["isDefault"]
    assert partitions["debug"]["maxTimeMinutes"] == 60
    assert partitions["batch"]["maxTimeMinutes"] is None
    assert [n["name"] for n in partitions["debug"]["nodes"]] == ["n1", "n2"]
    assert [n["name"] for n in partitions["batch"]["nodes"]] == ["n1", "n2", "n3", "n4"]
    assert partitions["batch"]["totalNodes"] == 4
    assert partitions["batch"]["totalCpus"] == 16
    assert partitions["debug"]["state"] == "UP"
    debug_running = {e["node"]["displayId"] for e in partitions["debug"]["jobs"]["edges"]}
    assert scenario.running in debug_running
    assert partitions["batch"]["jobs"]["totalCount"] == 2  # the two running array tasks


async def test_deep_query_costs_one_round_trip(api: Api, scenario: Scenario) -> None:
    """However deep, a query is one transport call carrying exactly the commands it needs."""
    body = await api.query(
        "{ clusters { partitions { nodes { jobs { partition { nodes { name } } } } } } }"
    )
    assert "errors" not in body, body
    assert api.transport.calls == 1
    programs = sorted(" ".join(argv[:2]) for argv in api.transport.batches[0])
    assert programs == ["scontrol --details", "scontrol --oneliner", "squeue --all"]


async def test_a_query_asks_only_for_what_it_reads(api: Api) -> None:
    """Names cost nothing; the version alone costs `scontrol --version` alone."""
    body = await api.query("{ clusters { name } cluster { name } }")
    assert body["data"] == {"clusters": [{"name": "local"}], "cluster": {"name": "local"}}
    assert api.transport.calls == 0
    body = await api.query("{ cluster { slurmVersion } }")
    assert body["data"]["cluster"]["slurmVersion"].count(".") == 2
    assert api.transport.batches == [[("scontrol", "--version")]]


async def test_two_root_fields_on_one_cluster_share_one_round_trip(api: Api) -> None:
    """`clusters` and `cluster` in one operation still cost one call for the cluster."""
    body = await api.query("{ a: cluster { nodes { name } } b: clusters { jobs { totalCount } } }")
    assert "errors" not in body, body
    assert api.transport.calls == 1


async def test_node_filters_and_version(api: Api, scenario: Scenario) -> None:
    """nodes(filter:) selects by sinfo-style state and by partition; the version is Slurm's."""
    body = await api.query(
        """{ cluster { slurmVersion
             drained: nodes(filter: {states: [DRAINED]}) { name }
             debug: nodes(filter: {partitions: ["debug"]}) { name }
             busyDebug: nodes(filter: {partitions: ["debug"], states: [MIXED, ALLOCATED]}) { name }
             none: nodes(filter: {partitions: ["nope"]}) { name } } }"""
    )
    assert "errors" not in body, body
    cluster = body["data"]["cluster"]
    assert cluster["drained"] == [{"name": DRAINED_NODE}]
    assert cluster["debug"] == [{"name": "n1"}, {"name": "n2"}]
    running_on = {n["name"] for n in cluster["busyDebug"]}
    assert running_on and running_on <= {"n1", "n2"}
    assert cluster["none"] == []
    version = subprocess.run(  # noqa: ASYNC221 - a one-off reference read in a test
        ["scontrol", "--version"], capture_output=True, text=True, check=True
    )
    assert cluster["slurmVersion"] == version.stdout.split()[-1]


async def test_over_ssm_the_deep_query_is_one_send_command(aws: Aws, scenario: Scenario) -> None:
    """Through boto3 and the SSM endpoint, the deep query costs exactly one SendCommand."""
    transport = open_transport(aws.ssm_url())
    aws.endpoint.reset_stats()
    try:
        async with app_client(Settings(cache_ttl=0.0), {"local": transport}) as client:
            query = (
                "{ clusters { partitions { nodes { jobs { partition { nodes { name } } } } } } }"
            )
            response = await client.post("/graphql", json={"query": query})
    finally:
        await transport.aclose()
    assert "errors" not in response.json()
    assert aws.endpoint.stats()["SendCommand"] == 1
