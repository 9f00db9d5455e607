"""One poller per cluster, shared by every subscription to it.

The poller runs while at least one watch is registered: the first subscriber starts it and it
stops when the last one leaves. Every `interval` seconds it takes one snapshot, whatever the
number of subscribers, through the cluster's SnapshotSource, so queries arriving within the cache
TTL are served from the poll's snapshot at no extra cost (a poll also fetches the datasets the
cached snapshot holds, so what queries read lately stays covered). It diffs the snapshot with
the previous one, looks up (in one more round trip, only when needed) how jobs that left squeue
ended, and hands the result to every watch, which posts events to its own bounded mailbox
without waiting.

A failed poll is reported once to every watch (UNAVAILABLE); polling goes on at the same pace,
and the first poll that succeeds again says RECOVERED and diffs against the last good snapshot,
so nothing that changed during the outage is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable, Mapping

from resolvers.events import TERMINAL_STATES, JobEventData, NodeEventData, jobs_by_id
from resolvers.final_state import look_up
from resolvers.log_values import loggable
from resolvers.lookup_backoff import LookupBackoff
from resolvers.mailbox import Finished, Overflowed
from resolvers.poll_delta import Applied, Touched, apply_delta, make_delta, touched
from resolvers.poll_delta import job_changes as diff_only_jobs
from resolvers.poll_delta import node_changes as diff_only_nodes
from resolvers.shared import SharedUnavailable
from resolvers.shared_poll import (
    CLAIMS_PER_INTERVAL,
    WATCH_STEP,
    Changed,
    PollFailed,
    SharedPolls,
    Whole,
)
from resolvers.slurm.errors import CommandFailed, ParseError, SlurmError
from resolvers.slurm.jobs import JobRow
from resolvers.slurm.nodes import NodeRecord
from resolvers.snapshot import Need, Snapshot
from resolvers.source import SnapshotSource
from resolvers.watches import PollUpdate, Watch
from slurm_graphql.errors import SlurmGraphQLError
from transport.errors import TransportError, TransportUnavailable

logger = logging.getLogger("slurm_graphql.poller")

# A poll fetches what queries asked for within this many intervals (or TTLs, if longer).
QUERIED_INTERVALS = 2
# What a follower's subscribers hear when the replica polling for them could not poll.
LEADER_FAILED = "the replica polling this cluster could not reach it"


class SubscriberTooSlow(SlurmGraphQLError):
    """A subscriber fell `size` events behind and was dropped, so others are not held up."""

    def __init__(self, size: int) -> None:
        super().__init__(f"the subscriber fell {size} events behind and was dropped")
        self.size = size


class InternalPollError(SlurmGraphQLError):
    """A poll failed for a reason that is a bug here, not the cluster's; details are logged."""


class Poller:
    def __init__(
        self,
        source: SnapshotSource,
        interval: float,
        on_idle: Callable[[Poller], None] = lambda poller: None,
        polls: SharedPolls | None = None,
        backoff: LookupBackoff | None = None,
    ) -> None:
        self.source = source
        # When subscriptions to jobs no poll showed their requester are looked up again.
        self.backoff = backoff if backoff is not None else LookupBackoff(interval)
        # With Redis: this replica polls only while it leads, else takes the leader's polls.
        self.shared_polls = polls
        self.interval = interval
        self.polls = 0  # successful or not
        self.latest: PollUpdate | None = None
        self.failure: Exception | None = None
        self._on_idle = on_idle
        self._watches: set[Watch] = set()
        self._needs = Need.NOTHING
        self._task: asyncio.Task[None] | None = None
        self._closed = False
        self._emptied_at = 0.0  # when the last watch left (time.monotonic())
        # Set when a watch joins that nothing polled can start: the poll loop polls at once.
        self._wake = asyncio.Event()
        self._polling: Need | None = None  # what the poll under way fetches

    @property
    def cluster(self) -> str:
        return self.source.cluster

    @property
    def watches(self) -> int:
        return len(self._watches)

    @property
    def needs(self) -> Need:
        return self._needs

    def _count_needs(self) -> None:
        # Kept up to date on add and remove: enum.Flag's | costs a microsecond, a poll of a
        # thousand watches would pay a millisecond for it.
        needs = Need.NOTHING
        for need in {watch.needs for watch in self._watches}:
            needs |= need
        self._needs = needs

    def add(self, watch: Watch) -> None:
        """Register `watch`; it starts from the latest poll if that has what it needs."""
        if self._closed:
            raise RuntimeError("this poller has stopped")
        self._watches.add(watch)
        self._needs |= watch.needs
        if self.latest is not None and watch.needs in self.latest.snapshot.needs:
            watch.prime(self.latest)
        elif self._task is not None and not (
            self._polling is not None and watch.needs in self._polling
        ):
            # No poll so far fetched what it reads (the latest had nodes only, say): it is
            # started by a poll now. Left to the next one, up to an interval later, it counted
            # what happened meanwhile as there before it: the dashboard's job table, opened
            # after the overview, missed the job submitted just after it loaded.
            self._wake.set()
        if self.failure is not None:
            watch.on_error(self.failure, time.time())
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=f"poller:{self.cluster}")

    def remove(self, watch: Watch) -> None:
        """Forget `watch`. After the last one the poller stops when its next poll is due, unless
        a watch came meanwhile; stopped, it never restarts."""
        self._watches.discard(watch)
        if self._watches:
            self._count_needs()
            return
        self._emptied_at = time.monotonic()
        if self._task is None:
            self._stop()

    def _idle(self, linger: float = 0.0) -> bool:
        """Whether to stop here: stopped already, or no watch is left and has been for
        `linger` seconds (the poll loop asks when a poll is due: nobody would hear of it).

        Not as soon as the last watch leaves: a subscriber who opens and ends a subscription
        in a loop then started a poller each time, which polls at once, so the head node got a
        poll per subscription (1,102 in 30 intervals at 0.3 s, one socket); a subscription
        opened while the poller waits joins it, primed from its latest poll, as any other."""
        if self._watches or self._closed:
            return self._closed
        if time.monotonic() - self._emptied_at < linger:
            return False
        self._stop()
        return True

    def _stop(self) -> None:
        self._closed = True
        self._on_idle(self)

    async def aclose(self) -> None:
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    @property
    def running(self) -> bool:
        return self._task is not None and not self._task.done()

    async def _run(self) -> None:
        if self.shared_polls is not None:
            await self._run_shared(self.shared_polls)
            return
        loop = asyncio.get_running_loop()
        due = loop.time()
        while not self._idle():
            self._wake.clear()
            await self._poll()
            if self._closed:
                return
            due += self.interval
            now = loop.time()
            if due < now:  # the poll took longer than the interval: start again at once
                due = now
            if await self._woken(due - now):
                # Brought forward for a watch no poll could start; the next one comes when it
                # was due anyway, so the head node sees at most one more poll an interval
                # however often watches come and go.
                self._wake.clear()
                await self._poll()
                if self._closed:
                    return
                await self._sleep(due - loop.time())

    async def _run_shared(self, polls: SharedPolls) -> None:
        """Poll every interval while this replica leads (publishing each snapshot), else hand
        on the leader's publications as they come, and try to take over a few times an
        interval (resolvers/shared_poll.py)."""
        loop = asyncio.get_running_loop()
        due = loop.time()
        renewing = asyncio.ensure_future(polls.keep_lease())
        try:
            # A follower without watches follows on for an interval (looks at Redis cost the
            # head node nothing; a new poller would read the latest publication whole); a
            # leader stops when its poll is due.
            while not self._idle(linger=self.interval):
                if await polls.lead():
                    if self._idle():
                        break
                    extra = await polls.everyones_needs()
                    started = loop.time()
                    await self._poll(extra=extra, publish=polls)
                    due = next_poll(due, started, loop.time(), self.interval)
                    await self._sleep(due - loop.time())
                    continue
                await self._follow(polls, loop.time() + self.interval / CLAIMS_PER_INTERVAL)
                due = loop.time()
        finally:
            renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await renewing
            await polls.resign()

    async def _follow(self, polls: SharedPolls, until: float) -> None:
        loop = asyncio.get_running_loop()
        try:
            # What this replica's queries read too, so the leader's poll serves them.
            await polls.say_needs(self._needs | self._queried())
            while not self._closed and loop.time() < until:
                publication = await polls.latest()
                if isinstance(publication, PollFailed):
                    self._failed(TransportUnavailable(LEADER_FAILED))
                    return
                # A publication without what this replica's watches need waits for the next
                # one, which the leader makes with them (say_needs).
                if publication is not None and self._needs in _needs_of(publication):
                    await self._take(polls, publication)
                    return
                await self._sleep(WATCH_STEP)
        except SharedUnavailable:
            return  # the next lead() finds Redis gone: this replica then polls alone

    async def _take(self, polls: SharedPolls, publication: Whole | Changed) -> None:
        """Hand the leader's publication on: applied to the rows of the one it was made against
        (in time proportional to the change), else diffed whole."""
        self.polls += 1
        if isinstance(publication, Whole):
            update = self._diff(publication.snapshot)[0]
        else:
            latest = self.latest
            applied = None
            if latest is not None:
                applied = apply_delta(self.cluster, latest.jobs, latest.nodes, publication.delta)
            if applied is None:  # not the publication it was made against after all
                polls.held = 0  # so the next one is read whole
                return
            update = self._applied(applied)
        try:
            await self._hand_on(update, publication.seq)
        except (TransportError, SlurmError, CommandFailed, ParseError) as exc:
            self._failed(exc)  # looking up how jobs ended failed
        except Exception:
            logger.exception("update of %s failed", self.cluster)
            self._failed(InternalPollError("internal error while polling"))

    def _queried(self) -> Need:
        """What this replica's queries asked for in the last QUERIED_INTERVALS intervals."""
        return self.source.queried_needs(QUERIED_INTERVALS * max(self.interval, self.source.ttl))

    async def _sleep(self, seconds: float) -> None:
        await asyncio.sleep(max(0.0, seconds))

    async def _woken(self, seconds: float) -> bool:
        """Sleep `seconds`, or less if a watch joined that no poll can start (True then)."""
        try:
            async with asyncio.timeout(max(0.0, seconds)):
                await self._wake.wait()
        except TimeoutError:
            return False
        return True

    async def _poll(self, extra: Need = Need.NOTHING, publish: SharedPolls | None = None) -> None:
        self.polls += 1
        try:
            # Also fetch what queries asked for lately (the cached snapshot's datasets), so
            # the poll's snapshot serves them too; this fades once they stop, with the TTL.
            fresh = self.source.fresh()
            needs = self._needs | extra | self._queried()
            if fresh is not None:
                needs |= fresh.needs
            self._polling = needs
            # A new snapshot, or one another replica fetched at most a quarter interval ago
            # (a query's refresh just before the poll): one fetch an interval, not two.
            await self.source.follow_writes()
            given = await self.source.refresh(needs, max_age=self.interval / 4)
            update, differ = self._diff(given)
            seq = 0  # not published: polled alone
            if publish is not None:
                # The followers hear of the poll before this replica looks up how jobs ended
                # (a round trip) and hands it to its own subscribers: each replica looks up
                # the jobs its own subscribers miss.
                delta = make_delta(publish.held, given, update.jobs, update.nodes, differ)
                shared = self.source.shared
                seq = await publish.publish(given, delta, shared.encoded(given) if shared else None)
            await self._hand_on(update, seq)
        except (TransportError, SlurmError, CommandFailed, ParseError) as exc:
            # The cluster could not be polled: subscribers hear why (schema/errors.py codes it).
            # Anything else is a fault of ours, logged and reported without its details.
            self._failed(exc)
            if publish is not None:  # and the other replicas' subscribers hear it too
                await publish.publish_failure()
            return
        except Exception:
            logger.exception("poll of %s failed", self.cluster)
            self._failed(InternalPollError("internal error while polling"))
            if publish is not None:
                await publish.publish_failure()
            return
        finally:
            self._polling = None

    async def _hand_on(self, update: PollUpdate, seq: int) -> None:
        """Hand `update` (publication `seq`, 0 if it is not one) to every watch, after looking
        up how jobs that left squeue ended, if any did, or are watched but not listed: watches
        that need none of that take it first (a job that was just submitted, and is not in this
        poll yet, cost every subscriber of the replica that round trip: ~0.3 s on a loaded
        head node, one poll in two in bench/replicas.py)."""
        wanted, asked = self._wanted(update)
        handed: set[Watch] = set()
        if wanted and self.failure is None:
            handed = {watch for watch in self._watches if watch.early(update)}
            for watch in handed:
                watch.on_poll(update)
        if wanted:
            update.finals = await look_up(self.source.transport, sorted(wanted))
            self._pace(asked, update)
        if self.failure is not None:
            self.failure = None
            for watch in list(self._watches):
                watch.on_recovered(update.snapshot.taken_at)
        self.latest = update
        if self.shared_polls is not None:
            # What a delta must be made against to be applied here, and what this replica's
            # own deltas are made against when it leads.
            self.shared_polls.held = seq
        for watch in list(self._watches):
            if watch not in handed:
                watch.on_poll(update)
        # A watch that finished, or whose consumer fell too far behind, takes no more events;
        # its mailbox keeps what it still has to hand over.
        for watch in [w for w in self._watches if w.mailbox.closed]:
            self.remove(watch)

    def _failed(self, error: Exception) -> None:
        # Once per outage: polling goes on every interval while the cluster is away.
        log = logger.warning if self.failure is None else logger.debug
        # The error may quote Slurm's stderr, which may quote a job's name.
        log("poll of %s failed: %s", self.cluster, loggable(error))
        self.failure = error
        at = time.time()
        for watch in list(self._watches):
            watch.on_error(error, at)

    def _diff(self, snapshot: Snapshot) -> tuple[PollUpdate, Touched]:
        """`snapshot` against the latest poll: the update every watch sees, and what differs."""
        jobs = jobs_by_id(snapshot.jobs) if Need.JOBS in snapshot.needs else None
        nodes = {n.name: n for n in snapshot.nodes or ()} if Need.NODES in snapshot.needs else None
        latest = self.latest
        differ = touched(
            latest.jobs if latest is not None else None,
            jobs,
            latest.nodes if latest is not None else None,
            nodes,
        )
        return self._changes(snapshot, jobs, nodes, differ), differ

    def _applied(self, applied: Applied) -> PollUpdate:
        return self._changes(applied.snapshot, applied.jobs, applied.nodes, applied.differ)

    def _changes(
        self,
        snapshot: Snapshot,
        jobs: Mapping[int, JobRow] | None,
        nodes: Mapping[str, NodeRecord] | None,
        differ: Touched,
    ) -> PollUpdate:
        """The update of a poll whose rows differ from the latest's only where `differ` says."""
        latest = self.latest
        job_changes = node_changes = None
        if latest is not None and latest.jobs is not None and jobs is not None:
            job_changes = diff_only_jobs(latest.jobs, jobs, differ.jobs)
        if latest is not None and latest.nodes is not None and nodes is not None:
            node_changes = diff_only_nodes(latest.nodes, nodes, differ.nodes)
        return PollUpdate(snapshot, jobs, nodes, job_changes, node_changes)

    def _wanted(self, update: PollUpdate) -> tuple[set[str], dict[Watch, str]]:
        """Jobs that left squeue before a poll saw them end, and jobs watched but not listed:
        how they ended is looked up, in one more round trip. A watch never shown its job is
        looked up only when its requester's turn has come (resolvers/lookup_backoff.py), else
        it is put in `update.deferred`. Returns the ids to look up, and the never-shown watches
        looked up with them (with their ids), whose answers pace their requesters."""
        wanted = {
            str(change.job_id)
            for change in update.job_changes or ()
            if change.after is None
            and change.before is not None
            and change.before.state not in TERMINAL_STATES
        }
        asked: dict[Watch, str] = {}
        for watch in self._watches:
            if (job_id := watch.missing_job(update)) is None:
                continue
            if watch.unseen:
                if not self.backoff.due(watch.requester):
                    update.deferred.add(watch)
                    continue
                asked[watch] = job_id
            wanted.add(job_id)
        return wanted, asked

    def _pace(self, asked: Mapping[Watch, str], update: PollUpdate) -> None:
        """A requester whose look-up found nothing it may see for one of its ids waits longer
        for the next (an id of another user's counts as one nobody has)."""
        futile = {
            watch.requester
            for watch, job_id in asked.items()
            if not watch.found(update.finals[job_id])
        }
        for requester in futile:
            self.backoff.futile(requester)


def next_poll(due: float, started: float, now: float, interval: float) -> float:
    """When the poll after one `due` at `due` and begun at `started` is due, `now` that it is
    over: an interval after `due`, but never less than an interval after `started` (a loaded
    loop began it late, and the next one on the old schedule came 0.38 s after it: two
    squeues in one interval, bench/replicas.py's 1.03 per interval), and at once if it ran
    longer than that."""
    return max(due + interval, started + interval, now)


def _needs_of(publication: Whole | Changed) -> Need:
    if isinstance(publication, Whole):
        return publication.snapshot.needs
    return publication.delta.needs


class PollerHub:
    """The pollers of an app, one per cluster, made on demand and dropped when idle."""

    def __init__(
        self, sources: Mapping[str, SnapshotSource], interval: float, mailbox_size: int = 256
    ) -> None:
        self._sources = sources
        self.interval = interval
        self.mailbox_size = mailbox_size
        self._pollers: dict[str, Poller] = {}
        # Per cluster, kept when its poller stops: a subscriber cannot reset its waits by
        # leaving the replica without subscribers for a moment.
        self._backoffs: dict[str, LookupBackoff] = {}

    def poller(self, cluster: str) -> Poller:
        poller = self._pollers.get(cluster)
        if poller is None:
            source = self._sources[cluster]
            polls = None
            if source.shared is not None:
                state = source.shared.state
                polls = SharedPolls(state, cluster, self.interval, state.replica)
            backoff = self._backoffs.setdefault(cluster, LookupBackoff(self.interval))
            poller = Poller(source, self.interval, self._forget, polls, backoff)
            self._pollers[cluster] = poller
        return poller

    def active(self) -> dict[str, Poller]:
        return dict(self._pollers)

    def _forget(self, poller: Poller) -> None:
        if self._pollers.get(poller.cluster) is poller:
            del self._pollers[poller.cluster]

    async def follow(
        self, cluster: str, watch: Watch
    ) -> AsyncIterator[JobEventData | NodeEventData]:
        """The events of `watch` on `cluster` until it finishes; leaving (or being closed) frees
        everything it held. Raises SubscriberTooSlow if its consumer fell too far behind."""
        poller = self.poller(cluster)
        poller.add(watch)
        try:
            while True:
                item = await watch.mailbox.get()
                if isinstance(item, Finished):
                    return
                if isinstance(item, Overflowed):
                    raise SubscriberTooSlow(watch.mailbox.size)
                yield item
        finally:
            poller.remove(watch)

    async def aclose(self) -> None:
        pollers, self._pollers = list(self._pollers.values()), {}
        for poller in pollers:
            await poller.aclose()
