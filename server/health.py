"""Readiness for load balancers: `/readyz` answers whether every configured cluster's controller
answers. (`/healthz`, in server/app.py, only says the process serves requests.)

Only `scontrol ping` says whether slurmctld answers: a round trip of real traffic proves the head
node answered, not its controller (squeue run while slurmctld is stopped is a round trip that
"succeeded" with an error on stderr). So a cluster is ready only while its latest probe, within
`interval` seconds, found a controller UP; a failed round trip of real traffic is newer news
and makes it not ready until the next probe. Checks that come together share one probe, bounded
by PROBE_TIMEOUT, so the head node sees at most one probe per interval per process however often
a load balancer asks.

`scontrol ping` is read, not just its exit code: it prints one line per controller,
"Slurmctld(primary) at head is UP" or "... is DOWN", and is ready when any controller is UP
(a backup serves when the primary is down).

`/readyz` needs no credentials, so its body says only whether each cluster is ready and, if
not, which kind of dependency failed and a reason from a fixed vocabulary (`REASONS`): never a
host, port, path or Slurm's own words (`scontrol ping` names the controller's host; a transport
error may name an instance, a bucket or a socket). Those go to the log
(`slurm_graphql.readiness`), once per probe and once per change from ready to not ready.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from resolvers.shared import SharedState
from server.round_trips import RoundTrip
from transport import (
    Command,
    Transport,
    TransportError,
    TransportTimeout,
    TransportUnavailable,
)

logger = logging.getLogger("slurm_graphql.readiness")

PROBE = Command(("scontrol", "ping"))
# A load balancer's check times out after a few seconds; a slower probe is a failed one.
PROBE_TIMEOUT = 5.0

# What an unauthenticated /readyz may say of a cluster: (dependency, reason). The dependency is
# what failed: the controller (slurmctld, asked with scontrol ping), the head node (the
# transport that reaches it: local://, ssm://...) or this server.
UP = ("controller", "up")
DOWN = ("controller", "down")
NO_ANSWER = ("controller", f"no answer within {PROBE_TIMEOUT:g} s")
HEAD_NODE_TIMEOUT = ("head node", "timed out")
HEAD_NODE_UNREACHABLE = ("head node", "unreachable")
HEAD_NODE_ERROR = ("head node", "error")
STARTING = ("server", "starting")
INTERNAL = ("server", "internal error")
REASONS = frozenset(
    {UP, DOWN, NO_ANSWER, HEAD_NODE_TIMEOUT, HEAD_NODE_UNREACHABLE, HEAD_NODE_ERROR}
    | {STARTING, INTERNAL}
)


@dataclass(frozen=True)
class Answer:
    at: float  # on the readiness clock
    ok: bool
    kind: tuple[str, str]  # (dependency, reason), one of REASONS: what clients are told
    detail: str  # for the log only: may name hosts, ports, paths, Slurm's words
    source: str  # "traffic" or "probe"


class Readiness:
    def __init__(
        self,
        clusters: tuple[str, ...],
        interval: float,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.clusters = clusters
        self.interval = interval
        self._clock = clock
        self._answers: dict[str, Answer] = {}
        self._transports: dict[str, Transport] = {}
        self._probes: dict[str, asyncio.Task[Answer]] = {}
        # With SLURM_GRAPHQL_REDIS_URL: whether this replica shares (reported, never a cause of
        # not being ready: without Redis a replica still answers, alone).
        self.shared: SharedState | None = None

    def attach(self, transports: Mapping[str, Transport]) -> None:
        """Use these transports for probes (at start-up); answers seen so far are kept."""
        self._transports = dict(transports)

    async def detach(self) -> None:
        """Stop using the transports (at shutdown): cancel probes still running."""
        self._transports = {}
        for task in list(self._probes.values()):
            task.cancel()
        await asyncio.gather(*self._probes.values(), return_exceptions=True)
        self._probes.clear()

    def record(self, trip: RoundTrip) -> None:
        """A round trip ended (a round trip listener): a failure is news, a success proves
        nothing about slurmctld, so only failures are kept."""
        if trip.error is not None:
            kind, detail = _describe(trip.error)
            before = self._answers.get(trip.cluster)
            answer = Answer(self._clock(), False, kind, detail, "traffic")
            self._answers[trip.cluster] = answer
            if before is None or before.ok:  # a run of failed traffic is logged once
                _log(trip.cluster, answer)

    async def check(self) -> tuple[bool, dict[str, dict[str, object]]]:
        """Whether every cluster is ready, and each cluster's latest answer."""
        answers = await asyncio.gather(*(self._answer(name) for name in self.clusters))
        now = self._clock()
        detail = {
            name: {
                "ready": answer.ok,
                "dependency": answer.kind[0],
                "reason": answer.kind[1],
                "source": answer.source,
                "age_seconds": round(now - answer.at, 3),
            }
            for name, answer in zip(self.clusters, answers, strict=True)
        }
        return all(answer.ok for answer in answers), detail

    async def _answer(self, cluster: str) -> Answer:
        latest = self._answers.get(cluster)
        if latest is not None and self._clock() - latest.at < self.interval:
            return latest
        task = self._probes.get(cluster)
        if task is None:
            task = asyncio.ensure_future(self._probe(cluster))
            self._probes[cluster] = task
            task.add_done_callback(lambda _: self._probes.pop(cluster, None))
        # Concurrent checks share the probe; a check that gives up does not cancel it for others.
        return await asyncio.shield(task)

    async def _probe(self, cluster: str) -> Answer:
        transport = self._transports.get(cluster)
        if transport is None:
            return Answer(self._clock(), False, STARTING, "no transport yet", "probe")
        try:
            async with asyncio.timeout(PROBE_TIMEOUT):
                [result] = await transport.run([PROBE])
        except TimeoutError:
            answer = Answer(self._clock(), False, NO_ANSWER, "scontrol ping timed out", "probe")
        except Exception as exc:
            kind, detail = _describe(exc)
            answer = Answer(self._clock(), False, kind, detail, "probe")
        else:
            if controller_up(result.stdout):
                answer = Answer(self._clock(), True, UP, "scontrol ping succeeded", "probe")
            else:
                # Its first line says it: "Slurmctld(primary) at head is DOWN".
                said = (result.stdout.strip() or result.stderr.strip()).split("\n")[0][:300]
                answer = Answer(self._clock(), False, DOWN, f"scontrol ping: {said}", "probe")
        if not answer.ok:
            _log(cluster, answer)
        # This answer is later than the one the transport wrapper recorded for the same call.
        self._answers[cluster] = answer
        return answer


def controller_up(ping_output: str) -> bool:
    """Whether `scontrol ping` names a controller that is UP (its exit code is not enough:
    some versions exit 0 with every controller DOWN)."""
    return any(
        line.startswith("Slurmctld(") and line.rstrip().endswith(" is UP")
        for line in ping_output.splitlines()
    )


def _describe(error: Exception) -> tuple[tuple[str, str], str]:
    """What clients are told of a failed round trip, and what the log is told (transport
    errors were written for operators; anything else is logged by its type alone)."""
    if isinstance(error, TransportTimeout):
        kind = HEAD_NODE_TIMEOUT
    elif isinstance(error, TransportUnavailable):
        kind = HEAD_NODE_UNREACHABLE
    elif isinstance(error, TransportError):
        kind = HEAD_NODE_ERROR
    else:
        return INTERNAL, type(error).__name__
    return kind, f"{type(error).__name__}: {error}"


def _log(cluster: str, answer: Answer) -> None:
    dependency, reason = answer.kind
    logger.warning(
        "cluster %s not ready (%s %s, from %s): %s",
        cluster,
        dependency,
        reason,
        answer.source,
        answer.detail,
    )


def readyz_endpoint(readiness: Readiness) -> Callable[[Request], Awaitable[Response]]:
    async def readyz(request: Request) -> Response:
        """200 when every cluster's controller answered its latest probe, else 503 with each
        one's state, in words that name no host, port or path (unauthenticated)."""
        ready, clusters = await readiness.check()
        body: dict[str, object] = {
            "status": "ready" if ready else "not ready",
            "clusters": clusters,
        }
        shared = readiness.shared
        if shared is not None:
            body["redis"] = {
                "up": shared.up,
                "detail": "shared snapshots"
                if shared.up
                else "unreachable: this replica uses its own cache",
            }
        return JSONResponse(body, status_code=200 if ready else 503)

    return readyz


__all__ = ["Readiness", "controller_up", "readyz_endpoint"]
