"""/healthz never asks a cluster; /readyz asks at most once per interval, against the real one."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

from server.settings import Settings
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.server import free_port
from transport.local import LocalTransport

PING = [("scontrol", "ping")]


def down_cluster(tmp_path: Path, slurm_conf: str) -> LocalTransport:
    """The local cluster's configuration pointing at a port no controller listens on."""
    lines = Path(slurm_conf).read_text().splitlines()
    port = free_port()
    moved = [f"SlurmctldPort={port}" if x.startswith("SlurmctldPort=") else x for x in lines]
    conf = tmp_path / "slurm.conf"
    conf.write_text("\n".join(moved) + "\n")
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
    assert cluster["detail"] == "scontrol ping succeeded"


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


async def test_a_controller_that_is_down_is_not_ready(slurm_cluster: str, tmp_path: Path) -> None:
    """scontrol ping fails: 503 naming the cluster and Slurm's words; the failure is cached."""
    down = CountingTransport(down_cluster(tmp_path, slurm_cluster))
    up = CountingTransport(LocalTransport())
    settings = Settings(clusters=(("hpc", "local://"), ("gpu", "local://")), ready_interval=60)
    async with app_client(settings, {"hpc": up, "gpu": down}) as client:
        first = await client.get("/readyz")
        second = await client.get("/readyz")
    assert first.status_code == second.status_code == 503
    body = first.json()
    assert body["status"] == "not ready"
    assert body["clusters"]["hpc"]["ready"] is True
    gpu = body["clusters"]["gpu"]
    assert gpu["ready"] is False
    assert gpu["detail"].startswith("scontrol ping failed: Slurmctld(primary)")
    assert "DOWN" in gpu["detail"]
    assert (up.calls, down.calls) == (1, 1)


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
    assert local["detail"].startswith("TransportTimeout: ")
    assert transport.calls == 1
