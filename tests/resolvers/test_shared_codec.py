"""What replicas share through Redis round-trips exactly, and nothing else decodes: a value
that is not ours, of another cluster, of the wrong shape or too large once inflated is refused
(pure: no Redis here, resolvers/shared_codec.py has no I/O)."""

from __future__ import annotations

import json
import zlib
from pathlib import Path
from typing import Any

import pytest

from resolvers.identity import Identity
from resolvers.scope import scope_of_job
from resolvers.shared_codec import CorruptSharedValue, decode, encode
from resolvers.slurm.nodes import parse_nodes
from resolvers.slurm.partitions import parse_partitions
from resolvers.snapshot import Need, Snapshot
from resolvers.visibility import Visibility
from tests.security.test_visibility import golden_rows

GOLDEN = Path(__file__).resolve().parent.parent / "golden" / "22.05"
EVERYTHING = Need.VERSION | Need.PARTITIONS | Need.NODES | Need.JOBS


def real_snapshot() -> Snapshot:
    return Snapshot(
        "local",
        1_700_000_000.5,
        EVERYTHING,
        version="22.05.8",
        partitions=tuple(parse_partitions((GOLDEN / "partitions/scenario.stdout").read_text())),
        nodes=tuple(parse_nodes((GOLDEN / "nodes/scenario.stdout").read_text())),
        jobs=tuple(golden_rows()),
    )


def body(snapshot: Snapshot) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(zlib.decompress(encode(snapshot, 7)))
    return loaded


def packed(value: dict[str, Any]) -> bytes:
    return zlib.compress(json.dumps(value).encode())


def test_a_real_snapshot_round_trips() -> None:
    """Records from the golden captures come back equal, with the fetch time, the datasets held
    and the generation."""
    snapshot = real_snapshot()
    assert snapshot.nodes and snapshot.partitions and snapshot.jobs
    back, generation = decode(encode(snapshot, 7), "local")
    assert generation == 7
    assert back == snapshot
    only_nodes = Snapshot("local", 2.0, Need.NODES, nodes=snapshot.nodes)
    assert decode(encode(only_nodes, 0), "local") == (only_nodes, 0)


def test_what_a_user_put_in_a_job_stays_data() -> None:
    """A job name or comment written to break the JSON, the field separators or the value's
    own keys comes back as the same text, in its own row, and changes nothing else."""
    [row, *_] = golden_rows()
    hostile = '"],"cluster":"other","jobs":[[1,"1","","",""]],"x":["\\\x00\ud800'
    forged = row._replace(free_text=hostile + row.free_text, display_id=row.display_id)
    snapshot = Snapshot("local", 3.0, Need.JOBS, jobs=(forged, row))
    back, _ = decode(encode(snapshot, 1), "local")
    assert back.jobs == (forged, row)
    assert back.cluster == "local"


def test_only_full_unfiltered_snapshots_are_shared() -> None:
    """A partial snapshot (some jobs) or one already filtered for a user never goes to Redis."""
    snapshot = real_snapshot()
    view = snapshot.seen_by(Visibility.of(Identity("bob"), own_jobs_only=True))
    with pytest.raises(ValueError, match="only full"):
        encode(view, 0)
    with pytest.raises(ValueError, match="only full"):
        encode(Snapshot("local", 1.0, Need.JOBS, scope=scope_of_job("42"), jobs=()), 0)


def _mutations() -> list[tuple[str, dict[str, Any]]]:
    good = body(real_snapshot())
    node = good["nodes"][0]
    cases: list[tuple[str, dict[str, Any]]] = [
        ("another cluster", {**good, "cluster": "other"}),
        ("a future format", {**good, "format": 2}),
        ("needs beyond the known flags", {**good, "needs": 1 << 10}),
        ("a negative generation", {**good, "generation": -1}),
        ("jobs held but missing", {**good, "jobs": None}),
        ("a job id that is text", {**good, "jobs": [["1", "1", "", "", ""]]}),
        ("a job row too long", {**good, "jobs": [[1, "1", "", "", "", "extra"]]}),
        ("a node field of the wrong type", {**good, "nodes": [[*node[:6], "four", *node[7:]]]}),
        ("a node missing a field", {**good, "nodes": [node[:-1]]}),
        ("a list holding a number", {**good, "nodes": [[node[0], node[1], [1], *node[3:]]]}),
        ("a version that is not text", {**good, "version": 22}),
    ]
    return cases


@pytest.mark.parametrize(("case", "value"), _mutations(), ids=[c for c, _ in _mutations()])
def test_a_value_not_of_our_shape_is_refused(case: str, value: dict[str, Any]) -> None:
    """Each field is checked against the record types: a planted or corrupted value is an
    error the caller logs and skips, never a snapshot."""
    with pytest.raises(CorruptSharedValue):
        decode(packed(value), "local")


@pytest.mark.parametrize(
    "raw",
    [b"", b"plain text", zlib.compress(b"{not json"), zlib.compress(b"[" * 100_000), b"\x78\x9c"],
)
def test_bytes_that_are_not_a_snapshot_are_refused(raw: bytes) -> None:
    """Garbage, truncated zlib data and JSON nested past the parser's depth are refused."""
    with pytest.raises(CorruptSharedValue):
        decode(raw, "local")


def test_a_value_too_large_once_inflated_is_refused_unread() -> None:
    """A zlib bomb (a few KB that inflate to 50 MB) stops at the bound, never inflated whole."""
    bomb = zlib.compress(b" " * 50_000_000, 9)
    assert len(bomb) < 100_000
    with pytest.raises(CorruptSharedValue, match="over 1000000 bytes"):
        decode(bomb, "local", max_bytes=1_000_000)
