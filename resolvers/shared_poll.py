"""One poller per cluster across all replicas (SLURM_GRAPHQL_REDIS_URL).

Every replica with subscribers runs its Poller (resolvers/poller.py), but only the one holding
the cluster's leader lease asks the head node; it publishes each poll to Redis, and the others
take it from there. A publication is two values written together: the poll's delta against the
leader's previous publication (the rows that changed: resolvers/poll_delta.py), which a
follower that handed its subscribers that previous one applies in time proportional to the
change, and the whole snapshot, which a follower that did not (it missed one, joined late, or
polled alone meanwhile) reads and diffs against the last one it handed on. Keys, under the
namespace and the cluster's hash tag:

    …:poll-leader   the leader's random token, SET NX PX lease_seconds(interval), renewed
                    on every poll, and every RENEW_INTERVALS in between (keep_lease), by a
                    script that checks the token first
    …:poll-epoch    bumped each time a replica takes the lease: the fencing token, carried in
                    every publication, so a leader that paused past its lease and came back
                    cannot publish over its successor (the script checks the lease too)
    …:poll          the latest poll's whole snapshot (resolvers/shared_codec.py: the bytes the
                    shared snapshots stored, not encoded again)
    …:poll-delta    the same poll's delta, prefixed with its publication's number and holding
                    the leader's epoch: a delta whose epoch is not …:poll-epoch's (planted by
                    someone with access to Redis, or left by a deposed leader) is refused,
                    logged and counted, as any value that is not what a leader writes
    …:poll-seq      the latest publication's number, what followers watch
    …:poll-needs    a hash: each replica's datasets its subscribers need, with a deadline, so
                    the leader polls for every replica's watches

Followers look at …:poll-seq every WATCH_STEP seconds (one small read) and try to take the lease
CLAIMS_PER_INTERVAL times an interval: when the leader dies (kill -9), its lease lapses within
lease_seconds (1.25 intervals, 1 s at least) and the first follower to try takes over, diffing
its first poll against the last snapshot it was handed, so no change, terminal states included,
is lost.
Redis not answering, every replica polls alone, as it would without Redis.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass

from resolvers.poll_delta import PollDelta
from resolvers.shared import SharedState, SharedUnavailable
from resolvers.shared_codec import CorruptSharedValue, decode, decode_delta, encode, encode_delta
from resolvers.snapshot import Need, Snapshot

# The lease outlives the leader by this many intervals: the most a kill -9 costs followers.
# With a claim every 1 / CLAIMS_PER_INTERVAL, takeover comes within 1.5 intervals of a kill,
# leaving half an interval of the 2 to a loaded follower's lag (bench/replicas.py
# measured 2.19 intervals with a 1.5-interval lease, 900 subscribers on 2 busy cores). A live
# leader renews it every RENEW_INTERVALS, whatever its poll is doing, so it loses the lease
# only if its event loop stalls for LEASE - RENEW = 1 interval: renewed only once per poll, a
# squeue slower than half an interval on a loaded head node (or a long fan-out to its
# subscribers) handed leadership over, and two replicas polled.
LEASE_INTERVALS = 1.25
# ...but never less than LEASE_FLOOR_SECONDS. An event loop stalls for a few hundred ms under
# load (a collection of a large heap, two test suites on two CPUs, a noisy neighbour): at a
# 0.3 s interval a 1.25-interval lease (375 ms) flipped leadership on each such stall, and the
# old leader read a whole snapshot to follow (in-process, every loop stall of 0.3-1.2 s at
# 0.3 s handed the lease over: 16 of 16). A second is more than such stalls and still a short
# wait after a kill -9 (takeover within the lease and a quarter interval: 1.00-1.12 s measured
# at 0.5 s, 0.59-0.74 s without the floor); from a 0.8 s interval on, 1.25 intervals are longer
# and the floor changes nothing. A flip loses nothing: the new leader diffs against the last
# publication it was handed, and the old one, fenced off, follows and applies its deltas
# (tests/server/test_poll_lease.py).
LEASE_FLOOR_SECONDS = 1.0
RENEW_INTERVALS = 0.25
# A follower tries to take the lease this often per interval (takeover: the lease + 1/4).
CLAIMS_PER_INTERVAL = 4
# How often a follower looks whether the leader published (seconds): the added latency.
WATCH_STEP = 0.02
# How long a replica's needs stand without being said again, in intervals.
NEEDS_INTERVALS = 4
_KNOWN_NEEDS = (Need.VERSION | Need.PARTITIONS | Need.NODES | Need.JOBS).value

_CLAIM = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return redis.call('INCR', KEYS[2])
end
return 0
"""
_RENEW = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
"""
# KEYS: leader, seq, poll (the whole snapshot), epoch, poll-delta; ARGV: token, snapshot, ms to
# keep, epoch, delta. Both values are of the same publication, its number prefixed to the delta.
_PUBLISH = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[4]) or '0') ~= tonumber(ARGV[4]) then return 0 end
local seq = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], ARGV[2], 'PX', ARGV[3])
redis.call('SET', KEYS[5], seq .. ':' .. ARGV[5], 'PX', ARGV[3])
return seq
"""


# A follower's look (KEYS: seq, poll-failed, epoch, poll-delta; ARGV: the publications it has
# seen and refused): {} when nothing is new, else the four values, read together.
_LOOK = """
local seq = redis.call('GET', KEYS[1])
if not seq or seq == ARGV[1] or seq == ARGV[2] then return {} end
return {seq, redis.call('GET', KEYS[2]) or false, redis.call('GET', KEYS[3]) or false,
        redis.call('GET', KEYS[4]) or false}
"""

_PUBLISH_FAILURE = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
if tonumber(redis.call('GET', KEYS[4]) or '0') ~= tonumber(ARGV[3]) then return 0 end
local seq = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[3], seq, 'PX', ARGV[2])
return seq
"""


def lease_seconds(interval: float) -> float:
    """How long the poll leader's lease lasts without a renewal, at a poll `interval`: the
    most a dead leader holds polling up (and the shortest loop stall that hands it over)."""
    return max(LEASE_INTERVALS * interval, LEASE_FLOOR_SECONDS)


class PollFailed:
    """What a follower hears when the leader's poll failed: the cluster could not be read."""


POLL_FAILED = PollFailed()


@dataclass(frozen=True)
class Whole:
    """A publication read whole: the follower did not hold the one its delta is made against."""

    seq: int
    snapshot: Snapshot


@dataclass(frozen=True)
class Changed:
    """A publication read as its delta against the one this replica holds (`held`)."""

    seq: int
    delta: PollDelta


Publication = Whole | Changed | PollFailed


class SharedPolls:
    """A replica's part in polling one cluster: leader or follower."""

    def __init__(
        self,
        state: SharedState,
        cluster: str,
        interval: float,
        replica: str,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.state = state
        self.cluster = cluster
        self.interval = interval
        self.replica = replica
        self._clock = clock
        prefix = state.key_prefix(cluster)
        self.leader_key = f"{prefix}:poll-leader"
        self.epoch_key = f"{prefix}:poll-epoch"
        self.poll_key = f"{prefix}:poll"
        self.delta_key = f"{prefix}:poll-delta"
        self.seq_key = f"{prefix}:poll-seq"
        self.needs_key = f"{prefix}:poll-needs"
        self.failed_key = f"{prefix}:poll-failed"  # the publication that says a poll failed
        self._token = secrets.token_hex(16)
        self.epoch = 0  # the fencing token while this replica leads; 0 when it does not
        self.seen = 0  # the last publication handed to this replica's subscribers
        # The publication whose snapshot is the poller's latest (what its subscribers last
        # heard), which a delta must be made against to be applied here; 0: none (the poller's
        # latest is a poll of its own that was not published, or there is none).
        self.held = 0
        self._refused = 0  # a publication refused (counted and logged once, not every look)
        self.published = 0  # publications made here, for tests and metrics
        # Publications taken from the leader: applied as a delta, or read whole (/metrics).
        self.deltas = 0
        self.wholes = 0
        self._next_claim = 0.0

    @property
    def _lease_ms(self) -> str:
        return str(int(lease_seconds(self.interval) * 1000))

    async def lead(self) -> bool:
        """Whether this replica polls now: it keeps (or takes) the lease, or Redis is not
        answering and every replica polls alone."""
        client = self.state.client
        try:
            if self.epoch:
                kept = await self.state.call(
                    lambda: client.eval(_RENEW, 1, self.leader_key, self._token, self._lease_ms)
                )
                if kept == 1:
                    return True
                self.epoch = 0
            now = self._clock()
            if now < self._next_claim:
                return False
            self._next_claim = now + self.interval / CLAIMS_PER_INTERVAL
            epoch = await self.state.call(
                lambda: client.eval(
                    _CLAIM, 2, self.leader_key, self.epoch_key, self._token, self._lease_ms
                )
            )
        except SharedUnavailable:
            self.epoch = 0
            return True
        self.epoch = epoch if isinstance(epoch, int) and epoch > 0 else 0
        return self.epoch > 0

    async def keep_lease(self) -> None:
        """Renew the lease every RENEW_INTERVALS while this replica leads (run beside the
        poller's loop, so a long poll or sleep does not let it lapse); stops leading as soon as
        a renewal finds another replica's token."""
        client = self.state.client
        while True:
            await asyncio.sleep(self.interval * RENEW_INTERVALS)
            if not self.epoch:
                continue
            try:
                kept = await self.state.call(
                    lambda: client.eval(_RENEW, 1, self.leader_key, self._token, self._lease_ms)
                )
            except SharedUnavailable:
                continue  # the next lead() sees it too, and this replica polls alone
            if kept != 1:
                self.epoch = 0

    async def publish(
        self, snapshot: Snapshot, delta: PollDelta, encoded: bytes | None = None
    ) -> int:
        """Hand a poll to the followers, if this replica still leads (fenced): its `delta`
        against publication `delta.base`, which the followers that hold it apply, and the whole
        `snapshot` (`encoded`: its bytes, if the shared snapshots already encoded it) for those
        that do not. The publication's number; 0 if it was not published."""
        if not self.epoch or not snapshot.scope.everything:
            return 0
        value = encoded if encoded is not None else encode(snapshot, self.epoch)
        changes = encode_delta(delta, self.cluster, self.epoch)
        client = self.state.client
        keep = str(max(60_000, int(self.interval * 10_000)))
        try:
            seq = await self.state.call(
                lambda: client.eval(
                    _PUBLISH,
                    5,
                    self.leader_key,
                    self.seq_key,
                    self.poll_key,
                    self.epoch_key,
                    self.delta_key,
                    self._token,
                    value,
                    keep,
                    str(self.epoch),
                    changes,
                )
            )
        except SharedUnavailable:
            return 0
        if isinstance(seq, int) and seq > 0:
            self.published += 1
            self.seen = seq
            return seq
        self.epoch = 0  # fenced off: a successor leads
        return 0

    async def publish_failure(self) -> None:
        """Tell the followers the leader's poll failed (fenced as publish is)."""
        if not self.epoch:
            return
        client = self.state.client
        try:
            seq = await self.state.call(
                lambda: client.eval(
                    _PUBLISH_FAILURE,
                    4,
                    self.leader_key,
                    self.seq_key,
                    self.failed_key,
                    self.epoch_key,
                    self._token,
                    str(max(60_000, int(self.interval * 10_000))),
                    str(self.epoch),
                )
            )
        except SharedUnavailable:
            return
        if isinstance(seq, int) and seq > 0:
            self.seen = seq
        else:
            self.epoch = 0

    async def latest(self) -> Publication | None:
        """The leader's latest publication if this replica has not had it yet: its delta if
        this replica holds the publication it is made against, else the whole snapshot, or
        POLL_FAILED. A value that is not what a leader of the current epoch wrote (corrupted,
        foreign, or published with another fencing token) is refused: logged, counted, and
        not handed to anyone."""
        client = self.state.client
        # One round trip a look, which answers the publication itself when there is a new one
        # (a look, then a read, cost a loaded follower two turns of its event loop).
        answer = await self.state.call(
            lambda: client.eval(
                _LOOK,
                4,
                self.seq_key,
                self.failed_key,
                self.epoch_key,
                self.delta_key,
                str(self.seen),
                str(self._refused),
            )
        )
        if not isinstance(answer, list) or len(answer) != 4:
            return None
        seq, failed, epoch, stored = answer
        if not isinstance(seq, bytes) or not seq.isdigit():
            return None

        async def read(*keys: str) -> list[object]:
            async with client.pipeline(transaction=True) as pipe:
                for key in keys:
                    pipe.get(key)
                return list(await pipe.execute())

        if failed == seq:
            self.seen = int(seq)
            return POLL_FAILED
        found = self._delta(seq, epoch, stored)
        if found is None:
            return None
        if found.base and found.base == self.held:
            self.seen = int(seq)
            self.deltas += 1
            return Changed(int(seq), found)
        # Not the publication this replica holds: the whole snapshot, of the same publication.
        seq, stored, value = await self.state.call(
            lambda: read(self.seq_key, self.delta_key, self.poll_key)
        )
        if not isinstance(seq, bytes) or self._delta(seq, epoch, stored) is None:
            return None
        if not isinstance(value, bytes):
            return None
        try:
            limit = self.state.max_bytes
            snapshot, _generation = (
                decode(value, self.cluster) if limit is None else decode(value, self.cluster, limit)
            )
        except CorruptSharedValue as exc:
            self._refuse(seq, self.poll_key, exc)
            return None
        self.seen = int(seq)
        self.wholes += 1
        return Whole(int(seq), snapshot)

    def _delta(self, seq: bytes, epoch: object, stored: object) -> PollDelta | None:
        """The delta of publication `seq` in `stored`, if a leader of `epoch` published it; None
        (refused, if it is not one) when it is not, or not yet, there."""
        if not isinstance(stored, bytes):
            return None
        number, colon, body = stored.partition(b":")
        if number != seq:
            return None  # a publication that came meanwhile: read at the next look
        try:
            if not colon:
                raise CorruptSharedValue("no publication number")
            limit = self.state.max_bytes
            delta, published_by = (
                decode_delta(body, self.cluster)
                if limit is None
                else decode_delta(body, self.cluster, limit)
            )
            if not (isinstance(epoch, bytes) and epoch.isdigit() and int(epoch) == published_by):
                raise CorruptSharedValue("published with another fencing token")
        except CorruptSharedValue as exc:
            self._refuse(seq, self.delta_key, exc)
            return None
        return delta

    def _refuse(self, seq: bytes, key: str, exc: CorruptSharedValue) -> None:
        self._refused = int(seq)  # not again
        self.state.refused(key, exc)

    async def say_needs(self, needs: Need) -> None:
        """Tell the leader what this replica's subscribers need, for NEEDS_INTERVALS."""
        deadline = int((time.time() + self.interval * NEEDS_INTERVALS) * 1000)
        client = self.state.client
        await self.state.call(
            lambda: client.hset(self.needs_key, self.replica, f"{needs.value}:{deadline}")
        )

    async def everyones_needs(self) -> Need:
        """The union of what every replica's subscribers said they need, still standing."""
        client = self.state.client
        try:
            said = await self.state.call(lambda: client.hgetall(self.needs_key))
        except SharedUnavailable:
            return Need.NOTHING
        now_ms = time.time() * 1000
        needs = Need.NOTHING
        stale = []
        for replica, value in dict(said).items():
            if not isinstance(value, bytes):
                continue
            flags, _, deadline = value.partition(b":")
            if not (flags.isdigit() and deadline.isdigit()) or int(deadline) < now_ms:
                stale.append(replica)
                continue
            needs |= Need(int(flags) & _KNOWN_NEEDS)
        if stale:
            with contextlib.suppress(SharedUnavailable):
                await self.state.call(lambda: client.hdel(self.needs_key, *stale))
        return needs

    async def resign(self) -> None:
        """Give the lease up (the last subscriber left): a follower need not wait it out."""
        if not self.epoch:
            return
        self.epoch = 0
        client = self.state.client
        release = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""
        with contextlib.suppress(SharedUnavailable):
            await self.state.call(lambda: client.eval(release, 1, self.leader_key, self._token))
