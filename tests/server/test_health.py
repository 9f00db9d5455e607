"""/healthz never asks a cluster; /readyz asks at most once per interval, against the real one."""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from pathlib import Path

import pytest

from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.scenario import QUICK_CONNECT_FAILURE
from tests.support.server import free_port
from transport.local import LocalTransport

PING = [("scontrol", "ping")]
ALICE = "Bearer alice-token"


def down_cluster(tmp_path: Path, slurm_conf: str) -> LocalTransport:
    """The local cluster's configuration pointing at a port no controller listens on (whose
    refusal the Slurm CLI reports after 1 s, not 9)."""
    lines = Path(slurm_conf).read_text().splitlines()
    port = free_port()
    moved = [f"SlurmctldPort={port}" if x.startswith("SlurmctldPort=") else x for x in lines]
    conf = tmp_path / "slurm.conf"
    conf.write_text("\n".join([QUICK_CONNECT_FAILURE, *moved]) + "\n")
    return LocalTransport(environ={**os.environ, "SLURM_CONF": str(conf)})


async def test_healthz_asks_no_cluster(slurm_cluster: str) -> None:
    """The process answers 200 without a single transport call."""
    transport = CountingTransport(LocalTransport())
    async with app_client(Settings(), {"local": transport}) as client:
        for _ in range(5):
            response = await client.get("/healthz")
            assert response.status_code == 200
            assert response.json() == {"status": "ok"}
    assert transport.calls == 0


async def test_readyz_probes_once_per_interval(slurm_cluster: str) -> None:
    """Fifty checks, twenty of them at once, cost the head node one `scontrol ping`."""
    transport = CountingTransport(LocalTransport())
    async with app_client(Settings(ready_interval=60), {"local": transport}) as client:
        responses = await asyncio.gather(*(client.get("/readyz") for _ in range(20)))
        responses += [await client.get("/readyz") for _ in range(30)]
    assert {r.status_code for r in responses} == {200}
    assert transport.batches == [PING]
    cluster = responses[-1].json()["clusters"]["local"]
    assert cluster["ready"] and cluster["source"] == "probe"
    assert (cluster["dependency"], cluster["reason"]) == ("controller", "up")


async def test_traffic_alone_does_not_make_a_cluster_ready(slurm_cluster: str) -> None:
    """A query that reached the head node says nothing of slurmctld: /readyz still pings."""
    transport = CountingTransport(LocalTransport())
    async with app_client(Settings(ready_interval=60), {"local": transport}) as client:
        await client.post("/graphql", json={"query": "{ cluster { slurmVersion } }"})
        response = await client.get("/readyz")
    assert response.status_code == 200
    assert response.json()["clusters"]["local"]["source"] == "probe"
    assert transport.calls == 2 and transport.batches[-1] == PING


async def test_an_old_answer_is_probed_again(slurm_cluster: str) -> None:
    """Once the interval has passed, the next check probes again (and only once)."""
    transport = CountingTransport(LocalTransport())
    async with app_client(Settings(ready_interval=0.3), {"local": transport}) as client:
        assert (await client.get("/readyz")).status_code == 200
        await asyncio.sleep(0.35)
        assert (await client.get("/readyz")).status_code == 200
        assert (await client.get("/readyz")).status_code == 200
    assert transport.batches == [PING, PING]


async def test_a_controller_that_is_down_is_not_ready(
    slurm_cluster: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """scontrol ping fails: 503 naming the cluster and the dependency that failed, in words
    that name no host, port or path (anyone may ask); Slurm's own words go to the log. The
    failure is cached."""
    down = CountingTransport(down_cluster(tmp_path, slurm_cluster))
    up = CountingTransport(LocalTransport())
    settings = Settings(clusters=(("hpc", "local://"), ("gpu", "local://")), ready_interval=60)
    with caplog.at_level(logging.WARNING, logger="slurm_graphql.readiness"):
        async with app_client(settings, {"hpc": up, "gpu": down}) as client:
            first = await client.get("/readyz")
            second = await client.get("/readyz")
    assert first.status_code == second.status_code == 503
    body = first.json()
    assert body["status"] == "not ready"
    assert body["clusters"]["hpc"]["ready"] is True
    gpu = body["clusters"]["gpu"]
    assert (gpu["ready"], gpu["dependency"], gpu["reason"]) == (False, "controller", "down")
    assert (up.calls, down.calls) == (1, 1)
    assert not internals(first.text, slurm_cluster, str(tmp_path / "slurm.conf")), first.text
    # The operator still learns what Slurm said, where it said it.
    [logged] = [r.getMessage() for r in caplog.records if "gpu" in r.getMessage()]
    assert "Slurmctld(primary)" in logged and "DOWN" in logged


def internals(text: str, *slurm_confs: str) -> list[str]:
    """What in `text` names this machine, a controller's host or port, or a path."""
    named = {socket.gethostname(), socket.getfqdn(), "localhost", "127.0.0.1", *slurm_confs}
    for conf in slurm_confs:
        for line in Path(conf).read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("SlurmctldHost", "ControlMachine", "SlurmctldPort", "SlurmdPort"):
                named.add(value.split("(")[0])
    found = [name for name in named if name and name in text]
    return found + [word for word in ("Slurmctld", "slurm.conf", "/") if word in text]


async def test_what_anyone_may_read_names_no_internals(slurm_cluster: str, tmp_path: Path) -> None:
    """With the controller down and a query failed on it: /healthz, /readyz, /metrics (open,
    as by default) and the answers to requests without a token or with a wrong one name no
    host, port or path."""
    down = down_cluster(tmp_path, slurm_cluster)
    settings = Settings(tokens=parse_token_map(TOKENS), metrics=True, ready_interval=60)
    async with app_client(settings, {"local": down}) as client:
        query = {"query": "{ cluster { name partitions { name } } }"}
        failed = await client.post("/graphql", json=query, headers={"Authorization": ALICE})
        assert failed.json()["errors"], failed.text  # the query did reach the head node
        answers = [
            await client.get("/healthz"),
            await client.get("/readyz"),
            await client.post("/graphql", json=query),
            await client.post("/graphql", json=query, headers={"Authorization": "Bearer no"}),
            await client.get("/graphql"),
        ]
        metrics = await client.get("/metrics")
    assert [a.status_code for a in answers] == [200, 503, 401, 401, 401]
    for answer in answers:
        assert not internals(answer.text, slurm_cluster, str(tmp_path / "slurm.conf")), answer
    samples = "\n".join(x for x in metrics.text.splitlines() if not x.startswith("#"))
    assert "slurm_graphql_transport_round_trips_total" in samples
    assert not internals(samples, slurm_cluster, str(tmp_path / "slurm.conf")), samples


async def test_a_failed_round_trip_makes_the_cluster_not_ready(slurm_cluster: str) -> None:
    """A query whose batch times out marks the cluster not ready until it answers again."""
    transport = CountingTransport(LocalTransport(timeout=0.001))
    async with app_client(Settings(ready_interval=60), {"local": transport}) as client:
        body = (
            await client.post("/graphql", json={"query": "{ cluster { slurmVersion } }"})
        ).json()
        response = await client.get("/readyz")
    assert body["errors"][0]["extensions"]["code"] == "TRANSPORT_TIMEOUT"
    assert response.status_code == 503
    local = response.json()["clusters"]["local"]
    assert local["source"] == "traffic"
    assert (local["dependency"], local["reason"]) == ("head node", "timed out")
    assert transport.calls == 1
