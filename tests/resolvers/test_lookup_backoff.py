"""The waits between a requester's futile look-ups (resolvers/lookup_backoff.py), on a clock the
test moves: 2, 4, 8, then 16 intervals; one requester's never another's; forgotten after a quiet
while."""

from __future__ import annotations

from resolvers.lookup_backoff import FORGET_GAPS, MAX_GAP, LookupBackoff


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_waits_double_up_to_the_longest_and_are_per_requester() -> None:
    """After each futile look-up the next is due 2, 4, 8, 16, 16 intervals later (less half an
    interval); another requester is due all along."""
    clock = Clock()
    backoff = LookupBackoff(2.0, clock)
    waited = []
    for _ in range(5):
        assert backoff.due("bob")
        backoff.futile("bob")
        began = clock.now
        while not backoff.due("bob"):
            assert backoff.due("alice")
            clock.now += 0.25
        waited.append((clock.now - began) / 2.0)
    assert waited == [1.5, 3.5, 7.5, 15.5, MAX_GAP - 0.5]
    assert backoff.waits("bob") == 5 and backoff.waits("alice") == 0


def test_a_streak_is_forgotten_after_a_quiet_while() -> None:
    """A requester with no futile look-up for FORGET_GAPS longest waits starts again at 2, and
    the map holds only requesters with a recent futile look-up."""
    clock = Clock()
    backoff = LookupBackoff(1.0, clock)
    for _ in range(3):
        backoff.futile("bob")
    clock.now += FORGET_GAPS * MAX_GAP + 1
    backoff.futile("carol")
    assert len(backoff) == 1 and backoff.waits("bob") == 0
    backoff.futile("bob")
    assert backoff.waits("bob") == 1
