"""Prometheus metrics at `/metrics`, in a registry of the app's own.

A registry per app (not prometheus_client's global one) lets several apps live in one process,
as they do in the tests, without their series colliding. The app imports this module only when
metrics are on: prometheus_client costs ~0.1 s of import, which a Lambda cold start should not
pay for an endpoint nobody can scrape there.

Series:
- slurm_graphql_requests_total / _request_duration_seconds{operation, outcome}: /graphql
  requests by operation name and outcome (ok, error, refused, rejected, failed).

Every label is bounded: clusters and backends come from the configuration, outcomes and error
class names from the code. Operation names come from clients, so a name becomes a label only if
it is a GraphQL name of at most MAX_NAME_LENGTH characters and fewer than `max_operations`
names have been taken; any other name, and every new name after that, counts as `other`, so no
client can grow the series without bound (it can fill the names first: the figure to set is
one above the number of operations your own clients name).

Who may read the metrics is server/metrics_access.py's business (a token, or a port of their own).
- slurm_graphql_transport_round_trips_total{cluster, backend, outcome} and
  _transport_duration_seconds{cluster, backend}: every batch sent to a head node.
- slurm_graphql_snapshot_cache_total{cluster, result}: snapshot gets served from the cache
  (hit) or that waited for the head node (miss). Read from the snapshot sources at scrape time.
- slurm_graphql_poller_subscribers / _poller_interval_seconds / _poller_polls_total{cluster}: the
  shared poller behind subscriptions, read from it at scrape time: how many subscriptions it
  serves, how often it reads the cluster and how many reads it made. A cluster nobody follows has
  no poller, so no series (absent, not a stale value).
- slurm_graphql_poller_publications_total{cluster, read}: with Redis, the poll leader's
  publications a follower took, as the rows that changed (delta) or whole (it missed the one
  before): mostly deltas, or followers are decoding whole queues.
- slurm_graphql_transport_sessions{cluster} and _transport_session_requests_total{cluster,
  result} and _transport_sessions_started_total{cluster}: local://'s long-lived scontrol
  processes (transport/interactive.py): how many are alive, the requests they answered or failed
  (a failed one ran as a process of its own), and how many were started in all.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector
from starlette.requests import Request
from starlette.responses import Response

from resolvers.poller import PollerHub
from resolvers.shared import SharedState
from resolvers.source import SnapshotSource
from server.observe import RequestRecord, outcome_of
from server.round_trips import RoundTrip
from transport import Transport
from transport.local import LocalTransport

DEFAULT_MAX_OPERATIONS = 100
MAX_NAME_LENGTH = 64
_GRAPHQL_NAME = re.compile(r"^[_A-Za-z][_0-9A-Za-z]*\Z")
# An SSM round trip takes from a quarter of a second to its 60 s timeout.
TRANSPORT_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class Metrics:
    def __init__(self, max_operations: int = DEFAULT_MAX_OPERATIONS) -> None:
        self.max_operations = max_operations
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "slurm_graphql_requests",
            "GraphQL requests by operation name and outcome.",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "slurm_graphql_request_duration_seconds",
            "Time to answer a GraphQL request, by operation name and outcome.",
            ["operation", "outcome"],
            registry=self.registry,
        )
        self.round_trips = Counter(
            "slurm_graphql_transport_round_trips",
            "Batches of commands sent to a head node, by cluster, backend and outcome.",
            ["cluster", "backend", "outcome"],
            registry=self.registry,
        )
        self.round_trip_seconds = Histogram(
            "slurm_graphql_transport_duration_seconds",
            "Time for one batch to reach the head node and come back.",
            ["cluster", "backend"],
            buckets=TRANSPORT_BUCKETS,
            registry=self.registry,
        )
        self._operations: set[str] = set()

    def watch_sources(self, sources: Mapping[str, SnapshotSource]) -> None:
        """Report the cache counters of `sources` (read at scrape time, so it may change)."""
        self.registry.register(_SnapshotCacheCollector(sources))

    def watch_shared(self, sources: Mapping[str, SnapshotSource]) -> list[SharedState]:
        """Report Redis' state and the shared snapshots; returns the list the app puts its
        SharedState in while its lifespan runs (empty: nothing reported)."""
        states: list[SharedState] = []
        self.registry.register(_SharedCollector(states, sources))
        return states

    def watch_sessions(self, transports: Mapping[str, Transport]) -> None:
        """Report the interactive sessions of the local:// transports in `transports` (filled
        while the app runs)."""
        self.registry.register(_SessionCollector(transports))

    def watch_pollers(self, pollers: PollerHub) -> None:
        """Report the pollers of `pollers` as they are when scraped."""
        self.registry.register(_PollerCollector(pollers))

    def observe_request(self, record: RequestRecord, status: int, seconds: float) -> None:
        """A request observer for ObserveMiddleware."""
        labels = (self._operation_label(record), outcome_of(record, status))
        self.requests.labels(*labels).inc()
        self.request_seconds.labels(*labels).observe(seconds)

    def observe_round_trip(self, trip: RoundTrip) -> None:
        """A round trip listener for WatchedTransport."""
        outcome = "ok" if trip.error is None else type(trip.error).__name__
        self.round_trips.labels(trip.cluster, trip.backend, outcome).inc()
        self.round_trip_seconds.labels(trip.cluster, trip.backend).observe(trip.seconds)

    def _operation_label(self, record: RequestRecord) -> str:
        name = record.operation
        if name is None:
            # No operation type: nothing was executed (GraphiQL's page, a malformed request).
            return "anonymous" if record.operation_type else "none"
        if name in self._operations:
            return name
        if (
            len(self._operations) < self.max_operations
            and len(name) <= MAX_NAME_LENGTH
            and _GRAPHQL_NAME.match(name)
        ):
            self._operations.add(name)
            return name
        return "other"

    async def endpoint(self, request: Request) -> Response:
        """The registry in Prometheus' text format."""
        return Response(generate_latest(self.registry), media_type=CONTENT_TYPE_LATEST)


class _SharedCollector(Collector):
    def __init__(self, states: list[SharedState], sources: Mapping[str, SnapshotSource]) -> None:
        self._states = states
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        if not self._states:
            return
        state = self._states[0]
        up = GaugeMetricFamily(
            "slurm_graphql_redis_up", "1 while Redis answers and replicas share snapshots."
        )
        up.add_metric([], 1.0 if state.up else 0.0)
        yield up
        failures = CounterMetricFamily(
            "slurm_graphql_redis_failures",
            "Redis calls that failed, each served by this replica alone.",
        )
        failures.add_metric([], state.failures)
        yield failures
        corrupt = CounterMetricFamily(
            "slurm_graphql_redis_refused_values", "Values read back from Redis and ignored."
        )
        corrupt.add_metric([], state.corrupt)
        yield corrupt
        family = CounterMetricFamily(
            "slurm_graphql_shared_snapshots",
            "Full snapshots another replica fetched (shared) or fetched here (fetched).",
            labels=["cluster", "result"],
        )
        for name, source in list(self._sources.items()):
            if source.shared is not None:
                family.add_metric([name, "shared"], source.shared.shared_hits)
                family.add_metric([name, "fetched"], source.shared.fetches)
        yield family


class _SessionCollector(Collector):
    def __init__(self, transports: Mapping[str, Transport]) -> None:
        self._transports = transports

    def collect(self) -> Iterator[Metric]:
        alive = GaugeMetricFamily(
            "slurm_graphql_transport_sessions",
            "Long-lived scontrol processes answering commands (local://).",
            labels=["cluster"],
        )
        requests = CounterMetricFamily(
            "slurm_graphql_transport_session_requests",
            "Commands a session answered, failed or declined (then run as a process of their own).",
            labels=["cluster", "result"],
        )
        started = CounterMetricFamily(
            "slurm_graphql_transport_sessions_started",
            "Session processes started (a failed or worn-out one is replaced).",
            labels=["cluster"],
        )
        for name, transport in list(self._transports.items()):
            stats = transport.session_stats if isinstance(transport, LocalTransport) else None
            if stats is None:
                continue
            alive.add_metric([name], stats.alive)
            requests.add_metric([name, "answered"], stats.answered)
            requests.add_metric([name, "failed"], stats.failed)
            requests.add_metric([name, "declined"], stats.declined)
            started.add_metric([name], stats.started)
        yield from (alive, requests, started)

    def describe(self) -> Iterator[Metric]:
        return iter(())


class _SnapshotCacheCollector(Collector):
    def __init__(self, sources: Mapping[str, SnapshotSource]) -> None:
        self._sources = sources

    def collect(self) -> Iterator[Metric]:
        family = CounterMetricFamily(
            "slurm_graphql_snapshot_cache",
            "Snapshot requests served from the cache (hit) or that waited for the head node.",
            labels=["cluster", "result"],
        )
        for name, source in self._sources.items():
            family.add_metric([name, "hit"], source.hits)
            family.add_metric([name, "miss"], source.lookups - source.hits)
        yield family
        listings = CounterMetricFamily(
            "slurm_graphql_history_listing_cache",
            "jobHistory window listings served from a requester's recent one (hit) or listed "
            "by sacct (miss).",
            labels=["cluster", "result"],
        )
        held = GaugeMetricFamily(
            "slurm_graphql_history_listing_rows",
            "Jobs the kept jobHistory window listings hold together.",
            labels=["cluster"],
        )
        for name, source in self._sources.items():
            listings.add_metric([name, "hit"], source.listings.hits)
            listings.add_metric([name, "miss"], source.listings.misses)
            held.add_metric([name], source.listings.rows)
        yield listings
        yield held

    def describe(self) -> Iterator[Metric]:
        # Describing without collecting: the sources are filled in later, at start-up.
        return iter(())


class _PollerCollector(Collector):
    def __init__(self, pollers: PollerHub) -> None:
        self._pollers = pollers

    def collect(self) -> Iterator[Metric]:
        subscribers = GaugeMetricFamily(
            "slurm_graphql_poller_subscribers",
            "Subscriptions the shared poller currently serves, by cluster.",
            labels=["cluster"],
        )
        interval = GaugeMetricFamily(
            "slurm_graphql_poller_interval_seconds",
            "Seconds between the shared poller's reads of a cluster.",
            labels=["cluster"],
        )
        polls = CounterMetricFamily(
            "slurm_graphql_poller_polls",
            "Reads of a cluster by its shared poller, successful or not, since it started.",
            labels=["cluster"],
        )
        taken = CounterMetricFamily(
            "slurm_graphql_poller_publications",
            "Polls of another replica (the poll leader) taken here, by how: as the rows that "
            "changed (delta) or the whole snapshot (whole, when the one before was missed).",
            labels=["cluster", "read"],
        )
        for name, poller in sorted(self._pollers.active().items()):
            subscribers.add_metric([name], poller.watches)
            interval.add_metric([name], poller.interval)
            polls.add_metric([name], poller.polls)
            if (shared := poller.shared_polls) is not None:
                taken.add_metric([name, "delta"], shared.deltas)
                taken.add_metric([name, "whole"], shared.wholes)
        yield from (subscribers, interval, polls, taken)

    def describe(self) -> Iterator[Metric]:
        return iter(())
