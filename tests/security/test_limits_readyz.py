"""/readyz tells the truth about slurmctld: a controller that is down or hung is not ready, even
right after traffic reached the head node, over local:// and ssm://."""

from __future__ import annotations

import dataclasses
import socket
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from server.health import PROBE_TIMEOUT, controller_up
from server.settings import Settings
from server.tokens import parse_token_map
from tests.conftest import TOKENS, open_inner_transport
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from tests.support.scenario import QUICK_CONNECT_FAILURE
from transport import Command

QUERY = {"query": "{ cluster { name partitions { name } } }"}
ALICE = {"Authorization": "Bearer alice-token"}


def configured(slurm_conf: Path) -> Callable[[Command], Command]:
    """Each command with SLURM_CONF naming another configuration: the same head node, pointed
    at a controller port of the test's choosing."""
    return lambda c: dataclasses.replace(c, env={**c.env, "SLURM_CONF": str(slurm_conf)})


def conf_with_port(slurm_conf: str, port: int, into: Path, *first: str) -> Path:
    """A copy of the cluster's slurm.conf whose controller listens on `port`, with the lines
    `first` before the cluster's."""
    lines = Path(slurm_conf).read_text().splitlines()
    moved = [f"SlurmctldPort={port}" if x.startswith("SlurmctldPort=") else x for x in lines]
    into.write_text("\n".join([*first, *moved]) + "\n")
    into.chmod(0o644)
    return into


@pytest.fixture
def conf_dir() -> Iterator[Path]:
    """A directory every user can read: commands may run as alice, not only as root."""
    with tempfile.TemporaryDirectory() as name:
        Path(name).chmod(0o755)
        yield Path(name)


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port that accepts connections and never answers: a hung slurmctld."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(16)
        yield listener.getsockname()[1]


@pytest.fixture(params=["local", "ssm"])
def kind(request: pytest.FixtureRequest, unix_users: None) -> str:
    """Each transport: local:// and ssm://."""
    kind: str = request.param
    return kind


async def _readyz_after_traffic(
    request: pytest.FixtureRequest, kind: str, conf: Path | None
) -> tuple[int, dict[str, object], int]:
    inner = open_inner_transport(request, kind)
    transport = CountingTransport(inner, None if conf is None else configured(conf))
    settings = Settings(tokens=parse_token_map(TOKENS), cache_ttl=0.0, ready_interval=60)
    try:
        async with app_client(settings, {"local": transport}) as client:
            await client.post("/graphql", json=QUERY, headers=ALICE)
            response = await client.get("/readyz")
    finally:
        await inner.aclose()
    return response.status_code, response.json()["clusters"]["local"], transport.calls


async def test_a_stopped_controller_is_not_ready_right_after_traffic(
    request: pytest.FixtureRequest, kind: str, slurm_cluster: str, conf_dir: Path
) -> None:
    """A query reached the head node (its squeue failed), then /readyz: 503, the controller
    is down."""
    conf = conf_with_port(
        slurm_cluster, _closed_port(), conf_dir / "slurm.conf", QUICK_CONNECT_FAILURE
    )
    status, cluster, calls = await _readyz_after_traffic(request, kind, conf)
    assert status == 503
    assert cluster["ready"] is False and cluster["source"] == "probe"
    assert (cluster["dependency"], cluster["reason"]) == ("controller", "down")
    assert calls == 2  # the query's batch, then one ping


async def test_a_running_controller_is_ready(
    request: pytest.FixtureRequest, kind: str, slurm_cluster: str
) -> None:
    """The same path against the real controller answers 200 (the test above is not vacuous)."""
    status, cluster, _ = await _readyz_after_traffic(request, kind, None)
    assert status == 200 and (cluster["dependency"], cluster["reason"]) == ("controller", "up")


async def test_a_hung_controller_is_not_ready_within_the_probe_timeout(
    request: pytest.FixtureRequest, slurm_cluster: str, silent_port: int, conf_dir: Path
) -> None:
    """slurmctld accepts and never answers: /readyz says 503 after PROBE_TIMEOUT, not later."""
    conf = conf_with_port(slurm_cluster, silent_port, conf_dir / "slurm.conf")
    inner = open_inner_transport(request, "local")
    transport = CountingTransport(inner, configured(conf))
    async with app_client(Settings(), {"local": transport}) as client:
        started = time.monotonic()
        response = await client.get("/readyz")
        elapsed = time.monotonic() - started
    assert response.status_code == 503
    assert elapsed < PROBE_TIMEOUT + 2
    cluster = response.json()["clusters"]["local"]
    assert cluster["ready"] is False and cluster["reason"].startswith("no answer within")


@pytest.mark.parametrize(
    ("output", "up"),
    [
        ("Slurmctld(primary) at head is UP\n", True),
        ("Slurmctld(primary) at head is DOWN\n*****\n** RESTORE SLURMCTLD DAEMON **\n", False),
        ("Slurmctld(primary) at a is DOWN\nSlurmctld(backup) at b is UP\n", True),
        ("Slurmctld(primary) at head is UP (but not really)\n", False),
        ("", False),
        ("scontrol: error: some failure\n", False),
    ],
)
def test_ping_output_is_read_not_its_exit_code(output: str, up: bool) -> None:
    """Ready only when ping names a controller that is UP, whatever it exited with."""
    assert controller_up(output) is up


def _closed_port() -> int:
    """A port nothing listens on: a stopped slurmctld."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
