"""Global object identification (the Relay spec): one opaque id per object, across clusters.

Frontend caches (Apollo, urql, Relay) keep one entry per type and `id`, so an id must name the
cluster as well as the object: job 42 of cluster A and job 42 of cluster B are two objects. An
id is the base64url of a short JSON array `[kind, cluster, key]`; clients must treat it as opaque
(its form may change), and Slurm's own ids stay plain fields (`jobId`, `displayId`, `name`).

The key is what stays the same while the object lives: a job's unique numeric id (its display
id changes as an array's tasks start), a partition's or compute node's name, a step's job id and
step id (`42.batch`: steps come from accounting, which knows a job by its unique id), nothing for
a cluster. Decoding is strict and pure; whether the object exists, and whether the caller may see
it, is decided by the request's view of the cluster's snapshot like any other lookup, so a job
the caller may not see is `null` exactly like a job that does not exist.

Kinds of later types are added to KINDS with their key's check, and
to the lookup and fetch plan beside the others (schema/query.py, resolvers/plan.py).
"""

from __future__ import annotations

import base64
import binascii
import enum
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass

from resolvers.ids import BadUserInput, validate_name

# A real id is under 100 characters; anything much longer is refused before it is decoded.
MAX_GLOBAL_ID = 600
# How many ids one `nodes(ids:)` may look up (its cost is per id, too: server/cost.py).
MAX_IDS = 100
_UNIQUE_JOB_ID = re.compile(r"^[0-9]{1,10}\Z", re.ASCII)
# A unique job id and a step id as sacct prints them (batch, extern, 0, 3+1 for a het step).
_STEP_KEY = re.compile(r"^[0-9]{1,10}\.[A-Za-z0-9_+]{1,32}\Z", re.ASCII)
_BASE64URL = re.compile(r"^[A-Za-z0-9_-]+\Z", re.ASCII)


class Kind(enum.StrEnum):
    """The GraphQL type an id names (its name in the schema)."""

    CLUSTER = "Cluster"
    PARTITION = "Partition"
    COMPUTE_NODE = "ComputeNode"
    JOB = "Job"
    JOB_STEP = "JobStep"


@dataclass(frozen=True)
class GlobalId:
    kind: Kind
    cluster: str
    key: str

    def encode(self) -> str:
        raw = json.dumps([self.kind.value, self.cluster, self.key], separators=(",", ":"))
        return base64.urlsafe_b64encode(raw.encode()).rstrip(b"=").decode("ascii")


def global_id(kind: Kind, cluster: str, key: str = "") -> str:
    return GlobalId(kind, cluster, key).encode()


def decode_global_id(value: object) -> GlobalId:
    """The id `value` encodes; BadUserInput if it is not one this API could have made."""
    if not isinstance(value, str) or len(value) > MAX_GLOBAL_ID or not _BASE64URL.match(value):
        raise BadUserInput("not a global id (ids are opaque: use one the API returned)")
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        parts = json.loads(raw.decode("utf-8"))
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise BadUserInput("not a global id (ids are opaque: use one the API returned)") from exc
    if (
        not isinstance(parts, list)
        or len(parts) != 3
        or not all(isinstance(p, str) for p in parts)
        or parts[0] not in Kind.__members__.values()
    ):
        raise BadUserInput("not a global id (ids are opaque: use one the API returned)")
    kind, cluster, key = Kind(parts[0]), parts[1], parts[2]
    validate_name("cluster", cluster)
    if kind is Kind.JOB and not _UNIQUE_JOB_ID.match(key):
        raise BadUserInput("not a global id of a job")
    if kind is Kind.JOB_STEP and not _STEP_KEY.match(key):
        raise BadUserInput("not a global id of a job step")
    if kind is Kind.CLUSTER and key:
        raise BadUserInput("not a global id of a cluster")
    if kind in (Kind.PARTITION, Kind.COMPUTE_NODE):
        validate_name(kind.value, key)
    return GlobalId(kind, cluster, key)


def read_global_id(value: object) -> GlobalId | None:
    """The id `value` encodes; None for one this API could not have made (forged, truncated,
    tampered, oversized): to `node(id:)` it names nothing, like an id of nothing that exists."""
    try:
        return decode_global_id(value)
    except BadUserInput:
        return None


def read_global_ids(values: object) -> tuple[GlobalId | None, ...]:
    """Every id of a `nodes(ids:)` list (None where one names nothing), at most MAX_IDS:
    more is BadUserInput, a limit of the request, not of one id."""
    items: Sequence[object] = values if isinstance(values, list) else [values]
    if len(items) > MAX_IDS:
        raise BadUserInput(f"nodes(ids:) takes at most {MAX_IDS} ids, got {len(items)}")
    return tuple(read_global_id(v) for v in items)
