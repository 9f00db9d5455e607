"""Filters, pagination and bad input, against the real local cluster."""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import subprocess
from pathlib import Path
from typing import Any

import pytest

from resolvers.pagination import encode_cursor
from server.settings import Settings
from tests.conftest import Api
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.scenario import OTHER_USER, QUICK_CONNECT_FAILURE, Scenario, internals_in
from transport.local import LocalTransport


async def ids(api: Api, arguments: str) -> list[str]:
    arguments = f"({arguments})" if arguments else ""
    body = await api.query(
        f"{{ cluster {{ jobs{arguments} {{ edges {{ node {{ displayId }} }} }} }} }}"
    )
    assert "errors" not in body, body
    return [e["node"]["displayId"] for e in body["data"]["cluster"]["jobs"]["edges"]]


async def test_filters_select_like_squeue(api: Api, scenario: Scenario) -> None:
    """states, users, partitions, names and ids each narrow the list as squeue's options do."""
    ours = set(scenario.all_ids)
    others = await ids(api, f'filter: {{users: ["{OTHER_USER}"]}}')
    assert [i for i in others if i in ours] == [scenario.other_user]
    assert [i for i in await ids(api, 'filter: {names: ["held"]}') if i in ours] == [scenario.held]
    failed = await ids(api, "filter: {states: [FAILED]}")
    assert scenario.failed in failed
    assert all(i != scenario.completed for i in failed)
    array = await ids(api, f'filter: {{ids: ["{scenario.array}"]}}')
    assert len(array) == 3 and all(i.startswith(f"{scenario.array}_") for i in array)
    one_task = array[0]
    assert await ids(api, f'filter: {{ids: ["{one_task}"]}}') == [one_task]
    batch_running = await ids(api, 'filter: {partitions: ["batch"], states: [RUNNING]}')
    assert len(batch_running) == 2  # the two array tasks; nothing else runs in batch


async def test_pages_cover_every_job_once(api: Api, scenario: Scenario) -> None:
    """Walking pages with `after` visits every job once, in job id order. Finished jobs
    of other tests may age out of Slurm during the walk: every job present from start to end
    must be seen."""
    everything = await ids(api, "")
    # About 20 pages, however many jobs earlier tests left behind; 2 at least.
    size = max(2, len(everything) // 20)
    seen: list[str] = []
    after = None
    while True:
        arguments = f"first: {size}" + (f', after: "{after}"' if after else "")
        body = await api.query(
            f"{{ cluster {{ jobs({arguments}) {{ totalCount edges {{ node {{ displayId }} }} "
            "pageInfo { hasNextPage endCursor } } } }"
        )
        page = body["data"]["cluster"]["jobs"]
        seen += [e["node"]["displayId"] for e in page["edges"]]
        if not page["pageInfo"]["hasNextPage"]:
            break
        after = page["pageInfo"]["endCursor"]
    still_there = set(await ids(api, ""))
    assert len(seen) == len(set(seen))
    assert [i for i in everything if i in still_there] == [i for i in seen if i in still_there]
    assert set(everything) & still_there <= set(seen)


async def test_single_lookups_and_missing_things(api: Api, scenario: Scenario) -> None:
    """job(id), node(name), partition(name) find things; unknown ones are null, not errors."""
    body = await api.query(
        f'{{ cluster {{ job(id: "{scenario.failed}") {{ displayId exitCode }}'
        ' nope: job(id: "99999999") { displayId }'
        ' node(name: "n2") { name } n: node(name: "zz") { name }'
        ' partition(name: "batch") { name } p: partition(name: "zz") { name } } }'
    )
    assert "errors" not in body, body
    cluster = body["data"]["cluster"]
    assert cluster["job"] == {"displayId": scenario.failed, "exitCode": 3}
    assert cluster["nope"] is None and cluster["n"] is None and cluster["p"] is None
    assert cluster["node"] == {"name": "n2"} and cluster["partition"] == {"name": "batch"}


FORGED_CURSOR = base64.urlsafe_b64encode(
    base64.urlsafe_b64decode(encode_cursor(1))[:-1] + b"9" * 5000
).decode()


@pytest.mark.parametrize(
    ("query", "code"),
    [
        ('{ cluster { job(id: "1; rm -rf /") { displayId } } }', "BAD_USER_INPUT"),
        ('{ cluster { jobs(filter: {ids: ["$(id)"]}) { totalCount } } }', "BAD_USER_INPUT"),
        ("{ cluster { jobs(first: 100001) { totalCount } } }", "BAD_USER_INPUT"),
        ("{ cluster { jobs(first: -1) { totalCount } } }", "BAD_USER_INPUT"),
        ('{ cluster { jobs(after: "not a cursor") { totalCount } } }', "BAD_USER_INPUT"),
        # Our own cursor form with a number int() refuses: once an internal error, logged with
        # a traceback for every request that sent it.
        (f'{{ cluster {{ jobs(after: "{FORGED_CURSOR}") {{ totalCount }} }} }}', "BAD_USER_INPUT"),
        ('{ cluster(name: "elsewhere") { name } }', "CLUSTER_NOT_FOUND"),
    ],
)
async def test_bad_input_is_refused_before_any_command(api: Api, query: str, code: str) -> None:
    """Malformed ids, page sizes, cursors and unknown clusters fail with a code, running nothing."""
    body = await api.query(query)
    assert body["data"] == {"cluster": None}
    assert [e["extensions"]["code"] for e in body["errors"]] == [code]
    assert api.transport.calls == 0


async def test_bad_input_in_variables_is_refused_too(api: Api) -> None:
    """Validation sees through variables."""
    query = "query($id: String!) { cluster { job(id: $id) { displayId } } }"
    body = await api.query(query, id="x y")
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert api.transport.calls == 0


async def _first_error(conf: Path, deadline: float, query: str) -> dict[str, Any]:
    """Run `query` with the Slurm CLI pointed at `conf`; return the one error it must produce."""
    environ = {**os.environ, "SLURM_CONF": str(conf)}
    transport = CountingTransport(LocalTransport(timeout=deadline, environ=environ))
    async with app_client(Settings(cache_ttl=0.0), {"local": transport}) as client:
        response = await client.post("/graphql", json={"query": query})
    assert response.status_code == 200
    body = response.json()
    assert body["data"] == {"cluster": None}
    assert "Traceback" not in response.text
    [error] = body["errors"]
    assert isinstance(error, dict)
    return error


def _conf_pointing_at(slurm_conf: str, tmp_path: Path, port: int, *first: str) -> Path:
    text = Path(slurm_conf).read_text()
    lines = [line for line in text.splitlines() if not line.startswith("SlurmctldPort")]
    conf = tmp_path / "slurm.conf"
    conf.write_text("\n".join([*first, f"SlurmctldPort={port}", *lines]) + "\n")
    return conf


async def test_unreachable_controller_is_slurm_unavailable(
    slurm_cluster: str, tmp_path: Path
) -> None:
    """With no controller listening, the client gets SLURM_UNAVAILABLE saying slurmctld is not
    answering, and neither the port squeue tried nor this host's name (the server's log has
    Slurm's words)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    conf = _conf_pointing_at(slurm_cluster, tmp_path, port, QUICK_CONNECT_FAILURE)
    error = await _first_error(conf, 60, "{ cluster { jobs { totalCount } } }")
    assert error["extensions"]["code"] == "SLURM_UNAVAILABLE"
    assert "slurmctld" in error["message"] and "not answering" in error["message"]
    assert internals_in(error["message"]) == [], error
    assert str(port) not in error["message"]


async def test_a_silent_controller_is_a_transport_timeout(
    slurm_cluster: str, tmp_path: Path
) -> None:
    """A controller that accepts but never answers ends in TRANSPORT_TIMEOUT at the deadline."""
    done = asyncio.Event()
    accepted: list[asyncio.StreamWriter] = []

    async def say_nothing(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(writer)
        await done.wait()

    server = await asyncio.start_server(say_nothing, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    conf = _conf_pointing_at(slurm_cluster, tmp_path, port)
    try:
        error = await _first_error(conf, 1.0, "{ cluster { jobs { totalCount } } }")
    finally:
        done.set()
        for writer in accepted:
            writer.close()
        server.close()
        await server.wait_closed()
    assert error["extensions"]["code"] == "TRANSPORT_TIMEOUT"


async def test_a_snapshot_fetched_to_cost_a_query_holds_what_the_query_asks(
    slurm_cluster: str,
) -> None:
    """A server that does not know the cluster's size yet fetches one snapshot to cost a nested
    query, and the query reads that snapshot: it must hold the query's own datasets too (the
    Slurm version was missing, answered as ""), still in one round trip."""
    transport = CountingTransport(LocalTransport())
    query = "{ cluster { slurmVersion partitions { name nodes { name } } } }"
    async with app_client(Settings(cache_ttl=0.0), {"local": transport}) as client:
        body = (await client.post("/graphql", json={"query": query})).json()
    done = await asyncio.to_thread(
        subprocess.run, ["scontrol", "--version"], capture_output=True, text=True, check=True
    )
    version = done.stdout.split()[-1]
    assert body["data"]["cluster"]["slurmVersion"] == version
    assert transport.calls == 1
