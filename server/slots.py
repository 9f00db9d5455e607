"""Things held at once per key, at most a limit each: the in-process count behind the stream and
WebSocket connection caps (server/channel_limits.py), and the fallback of the shared stream cap
when Redis does not answer (server/shared_limits.py). Both import it; it imports neither."""

from __future__ import annotations


class Slots:
    """How many things each key holds at once, at most `limit` each."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._held: dict[str, int] = {}

    def acquire(self, key: str) -> bool:
        held = self._held.get(key, 0)
        if held >= self.limit:
            return False
        self._held[key] = held + 1
        return True

    def release(self, key: str) -> None:
        held = self._held.get(key, 0) - 1
        if held > 0:
            self._held[key] = held
        else:
            # Keys that hold nothing are forgotten, so the map is as large as what is open.
            self._held.pop(key, None)

    def held(self, key: str) -> int:
        return self._held.get(key, 0)
