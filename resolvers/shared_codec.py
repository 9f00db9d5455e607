"""Snapshots as the bytes replicas share in Redis (resolvers/shared.py), and the poll leader's
deltas (resolvers/poll_delta.py, resolvers/shared_poll.py): pure, no I/O.

Only full snapshots (every job) are shared; a partial one answers only the query planned for it
and stays with its replica. The value is zlib-compressed JSON holding the records as tuples, the
fetch time, the datasets held (`needs`) and the write generation it was fetched in. What comes
back is checked field by field against the record types, and a value over `max_bytes` once
inflated is refused unread: a corrupted, foreign or oversized value is a CorruptSharedValue,
which the caller logs and treats as a miss, never as data.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
import zlib
from typing import Any

from resolvers.poll_delta import PollDelta
from resolvers.scope import EVERY_JOB
from resolvers.slurm.jobs import JobRow
from resolvers.slurm.nodes import NodeRecord
from resolvers.slurm.partitions import PartitionRecord
from resolvers.snapshot import Need, Snapshot
from slurm_graphql.errors import SlurmGraphQLError

FORMAT = 1
# Inflated bytes a value may take: a 100,000-job queue is ~40 MB of JSON.
DEFAULT_MAX_BYTES = 256 * 1024 * 1024
_ALL_NEEDS = Need.VERSION | Need.PARTITIONS | Need.NODES | Need.JOBS


class CorruptSharedValue(SlurmGraphQLError, ValueError):
    """A value read back from Redis is not a snapshot this process wrote the way it writes."""


def encode(snapshot: Snapshot, generation: int) -> bytes:
    """`snapshot` (a full one, not filtered for an audience) as compressed JSON."""
    if not snapshot.scope.everything or snapshot.audience is not None:
        raise ValueError("only full, unfiltered snapshots are shared")
    body = {
        "format": FORMAT,
        "cluster": snapshot.cluster,
        "taken_at": snapshot.taken_at,
        "needs": snapshot.needs.value,
        "generation": generation,
        "version": snapshot.version,
        "partitions": _rows(snapshot.partitions),
        "nodes": _rows(snapshot.nodes),
        "jobs": None if snapshot.jobs is None else [list(row) for row in snapshot.jobs],
    }
    # Level 1: most of the gain on squeue's repetitive rows, at a fraction of the time.
    return zlib.compress(json.dumps(body, separators=(",", ":")).encode(), 1)


def decode(data: bytes, cluster: str, max_bytes: int = DEFAULT_MAX_BYTES) -> tuple[Snapshot, int]:
    """The snapshot of `cluster` in `data`, and the generation it was fetched in."""
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(data, max_bytes)
    except zlib.error:
        raise CorruptSharedValue("not zlib data") from None
    if inflater.unconsumed_tail:
        raise CorruptSharedValue(f"over {max_bytes} bytes inflated")
    try:
        body = json.loads(raw)
    except (ValueError, RecursionError):  # nested arrays past the parser's depth
        raise CorruptSharedValue("not JSON") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT:
        raise CorruptSharedValue("not a snapshot of this format")
    if body.get("cluster") != cluster:
        raise CorruptSharedValue("a snapshot of another cluster")
    taken_at, needs, generation = body.get("taken_at"), body.get("needs"), body.get("generation")
    version = body.get("version")
    if not isinstance(taken_at, int | float) or isinstance(taken_at, bool):
        raise CorruptSharedValue("taken_at is not a number")
    if not _is_int(needs) or needs & ~_ALL_NEEDS.value or not _is_int(generation):
        raise CorruptSharedValue("needs or generation is not valid")
    if version is not None and not isinstance(version, str):
        raise CorruptSharedValue("version is not a string")
    held = Need(needs)
    partitions = _records(body.get("partitions"), PartitionRecord)
    nodes = _records(body.get("nodes"), NodeRecord)
    jobs = _jobs(body.get("jobs"))
    for flag, value in (
        (Need.PARTITIONS, partitions),
        (Need.NODES, nodes),
        (Need.JOBS, jobs),
        (Need.VERSION, version),
    ):
        if (flag in held) != (value is not None):
            raise CorruptSharedValue(f"{flag.name} held and value disagree")
    snapshot = Snapshot(
        cluster=cluster,
        taken_at=float(taken_at),
        needs=held,
        version=version,
        scope=EVERY_JOB,
        partitions=partitions,
        nodes=nodes,
        jobs=jobs,
    )
    return snapshot, generation


def encode_delta(delta: PollDelta, cluster: str, epoch: int) -> bytes:
    """A poll's delta (resolvers/poll_delta.py) as compact JSON, with the leader's epoch (its
    fencing token); small, so not compressed."""
    body = {
        "format": FORMAT,
        "kind": "delta",
        "cluster": cluster,
        "epoch": epoch,
        "base": delta.base,
        "taken_at": delta.taken_at,
        "needs": delta.needs.value,
        "version": delta.version,
        "partitions": _rows(delta.partitions),
        "jobs": [list(row) for row in delta.jobs],
        "jobs_gone": list(delta.jobs_gone),
        "nodes": _rows(delta.nodes),
        "nodes_gone": list(delta.nodes_gone),
    }
    return json.dumps(body, separators=(",", ":")).encode()


def decode_delta(
    data: bytes, cluster: str, max_bytes: int = DEFAULT_MAX_BYTES
) -> tuple[PollDelta, int]:
    """The delta of `cluster` in `data`, and the epoch of the leader that published it."""
    if len(data) > max_bytes:
        raise CorruptSharedValue(f"over {max_bytes} bytes")
    try:
        body = json.loads(data)
    except (ValueError, RecursionError):
        raise CorruptSharedValue("not JSON") from None
    if not isinstance(body, dict) or body.get("format") != FORMAT or body.get("kind") != "delta":
        raise CorruptSharedValue("not a delta of this format")
    if body.get("cluster") != cluster:
        raise CorruptSharedValue("a delta of another cluster")
    epoch, base, needs = body.get("epoch"), body.get("base"), body.get("needs")
    taken_at, version = body.get("taken_at"), body.get("version")
    if not (_is_int(epoch) and _is_int(base) and _is_int(needs)) or needs & ~_ALL_NEEDS.value:
        raise CorruptSharedValue("epoch, base or needs is not valid")
    if not isinstance(taken_at, int | float) or isinstance(taken_at, bool):
        raise CorruptSharedValue("taken_at is not a number")
    if version is not None and not isinstance(version, str):
        raise CorruptSharedValue("version is not a string")
    held = Need(needs)
    partitions = _records(body.get("partitions"), PartitionRecord)
    if (Need.PARTITIONS in held) != (partitions is not None):
        raise CorruptSharedValue("PARTITIONS held and value disagree")
    jobs_gone, nodes_gone = body.get("jobs_gone"), body.get("nodes_gone")
    if not isinstance(jobs_gone, list) or not all(_is_int(i) for i in jobs_gone):
        raise CorruptSharedValue("jobs_gone is not a list of job ids")
    if not isinstance(nodes_gone, list) or not all(isinstance(n, str) for n in nodes_gone):
        raise CorruptSharedValue("nodes_gone is not a list of names")
    delta = PollDelta(
        base=base,
        taken_at=float(taken_at),
        needs=held,
        version=version,
        partitions=partitions,
        jobs=_jobs(body.get("jobs")) or (),
        jobs_gone=tuple(jobs_gone),
        nodes=_records(body.get("nodes"), NodeRecord) or (),
        nodes_gone=tuple(nodes_gone),
    )
    return delta, epoch


def _is_int(value: object) -> typing.TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _rows(records: tuple[Any, ...] | None) -> list[list[Any]] | None:
    if records is None:
        return None
    return [list(dataclasses.astuple(record)) for record in records]


_JOB_ROW_TYPES = (int, str, str, str, str)


def _jobs(value: object) -> tuple[JobRow, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise CorruptSharedValue("jobs is not a list")
    rows = []
    for item in value:
        if (
            not isinstance(item, list)
            or len(item) != len(_JOB_ROW_TYPES)
            or isinstance(item[0], bool)
            or not all(isinstance(v, t) for v, t in zip(item, _JOB_ROW_TYPES, strict=True))
        ):
            raise CorruptSharedValue("a job row of the wrong shape")
        rows.append(JobRow(*item))
    return tuple(rows)


_FIELD_TYPES: dict[type[Any], tuple[tuple[str, Any], ...]] = {}


def _field_types(record_type: type[Any]) -> tuple[tuple[str, Any], ...]:
    found = _FIELD_TYPES.get(record_type)
    if found is None:
        hints = typing.get_type_hints(record_type)
        found = tuple((f.name, hints[f.name]) for f in dataclasses.fields(record_type))
        _FIELD_TYPES[record_type] = found
    return found


def _records(value: object, record_type: type[Any]) -> tuple[Any, ...] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise CorruptSharedValue(f"{record_type.__name__} list is not a list")
    fields = _field_types(record_type)
    records = []
    for item in value:
        if not isinstance(item, list) or len(item) != len(fields):
            raise CorruptSharedValue(f"a {record_type.__name__} of the wrong shape")
        values = [_typed(v, hint) for v, (_, hint) in zip(item, fields, strict=True)]
        records.append(record_type(*values))
    return tuple(records)


def _typed(value: object, hint: Any) -> object:
    """`value` as the type `hint` names (JSON arrays become tuples), or CorruptSharedValue."""
    origin = typing.get_origin(hint)
    if origin is types.UnionType or origin is typing.Union:
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        [kind] = [option for option in options if option is not type(None)]
        return _typed(value, kind)
    if origin is tuple:
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise CorruptSharedValue("a list of strings expected")
        return tuple(value)
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, int | float) and not isinstance(value, bool):
            return float(value)
    elif hint is str and isinstance(value, str):
        return value
    raise CorruptSharedValue(f"{type(value).__name__} where {hint} is expected")
