"""A subscription's mailbox: where the poller posts its events, without ever waiting.

A mailbox is bounded. A consumer that falls that many events behind is not waited for (that
would delay every other subscriber of the cluster): its pending events are dropped, it is told
once (`Overflowed`) and it is removed.
"""

from __future__ import annotations

import asyncio

from resolvers.events import JobEventData, NodeEventData


class Overflowed:
    """Posted last to a mailbox whose consumer fell too far behind."""


class Finished:
    """Posted last when a subscription has nothing more to say (a job reached its end)."""


Item = JobEventData | NodeEventData | Overflowed | Finished


class Mailbox:
    def __init__(self, size: int) -> None:
        self.size = size
        self.closed = False
        self.overflowed = False
        self._queue: asyncio.Queue[Item] = asyncio.Queue()

    def post(self, item: JobEventData | NodeEventData) -> None:
        if self.closed:
            return
        if self._queue.qsize() >= self.size:
            self.overflowed = True
            while not self._queue.empty():
                self._queue.get_nowait()
            self._close(Overflowed())
            return
        self._queue.put_nowait(item)

    def finish(self) -> None:
        self._close(Finished())

    def _close(self, last: Overflowed | Finished) -> None:
        if not self.closed:
            self.closed = True
            self._queue.put_nowait(last)

    async def get(self) -> Item:
        return await self._queue.get()

    def qsize(self) -> int:
        return self._queue.qsize()
