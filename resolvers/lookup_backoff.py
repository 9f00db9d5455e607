"""How often a requester's subscriptions to jobs nothing showed them are looked up.

A `jobStateChanged` whose job is not in the poll (an id nobody has, another user's job under
SLURM_GRAPHQL_JOB_VISIBILITY=own, an old job only accounting knows) is looked up on the head node
(resolvers/final_state.py: one `scontrol show job` per id, up to 32, and two sacct) and answered:
UNKNOWN when nothing it may see knows the job. A subscriber that reopens such subscriptions as
fast as they end (100 at once per user) had every poll of every replica it used pay that round
trip: 34 commands a poll, for nothing.

So each requester (an identity: `Identity.cache_key`) whose look-up found nothing it may see for
one of its ids waits before its next ones: 2, 4, 8, then 16 intervals at most, one look-up in 16
polls for a subscriber that keeps trying. Its subscriptions meanwhile wait, and are answered
with the next look-up; a job that appears in squeue meanwhile is seen at the next poll as
always. Nothing here depends on what another user's jobs are: an id of alice's counts for bob
exactly as an id nobody has, so the waits tell him nothing. The streak is forgotten after
FORGET_GAPS of the longest wait without a futile look-up. It lives in the replica's PollerHub,
one per cluster, so it outlasts a poller that stops when its last subscriber leaves.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

# The longest wait, in poll intervals: the most a persistent subscriber's futile look-ups cost
# is one round trip in this many polls (bench figure in CHANGELOG), and the longest an UNKNOWN
# answer of one that keeps asking for nothing can take.
MAX_GAP = 16
# A streak is forgotten after this many longest waits without a futile look-up.
FORGET_GAPS = 2


@dataclass
class _Streak:
    futile: int  # consecutive look-ups that found nothing for the requester
    due: float  # when its next look-up may run (clock time)
    last: float  # when the latest futile one ran


class LookupBackoff:
    """Per requester: when its subscriptions to jobs no poll showed it are next looked up."""

    def __init__(
        self,
        interval: float,
        clock: Callable[[], float] = time.monotonic,
        max_gap: int = MAX_GAP,
    ) -> None:
        self.interval = interval
        self.max_gap = max_gap
        self._clock = clock
        self._streaks: dict[str, _Streak] = {}

    def due(self, requester: str) -> bool:
        """Whether `requester`'s unseen jobs are looked up with this poll."""
        streak = self._streaks.get(requester)
        return streak is None or self._clock() >= streak.due

    def waits(self, requester: str) -> int:
        """How many futile look-ups in a row `requester` has had (0: none)."""
        streak = self._streaks.get(requester)
        return 0 if streak is None else streak.futile

    def futile(self, requester: str) -> None:
        """A look-up made for `requester` found nothing it may see for at least one of its ids:
        its next waits twice as long as the last, up to `max_gap` intervals. Half an interval
        is taken off, so the poll at the end of the wait is not missed by its jitter."""
        now = self._clock()
        self._forget_old(now)
        streak = self._streaks.get(requester)
        futile = 1 if streak is None else streak.futile + 1
        gap = min(2**futile, self.max_gap)
        self._streaks[requester] = _Streak(futile, now + (gap - 0.5) * self.interval, now)

    def _forget_old(self, now: float) -> None:
        horizon = now - FORGET_GAPS * self.max_gap * self.interval
        for requester in [r for r, s in self._streaks.items() if s.last < horizon]:
            del self._streaks[requester]

    def __len__(self) -> int:
        return len(self._streaks)
