"""The tests' transports, as httpx ships MockTransport: one that forwards to a real transport and
records every batch (CountingTransport), and one that answers from a handler (MockTransport).

Tests run against the real cluster through CountingTransport; MockTransport is for what no real
component does on purpose (a bug inside the server, thousands of fuzzed mutations that must run
nothing) and for benchmarks that measure the server's side of a round trip alone. Both record
what they were asked (`batches`, argv lists per call), so a test counts round trips and reads
the commands the same way whichever it uses.
"""

from __future__ import annotations

import inspect
from collections.abc import Awaitable, Callable, Sequence

from transport import Command, CommandResult, Transport

Handler = Callable[[Command], CommandResult | Awaitable[CommandResult]]


class _Recording:
    def __init__(self) -> None:
        self.batches: list[list[tuple[str, ...]]] = []

    @property
    def calls(self) -> int:
        """Round trips asked for."""
        return len(self.batches)

    @property
    def commands(self) -> int:
        """Commands asked for, in all batches."""
        return sum(len(batch) for batch in self.batches)


class CountingTransport(_Recording):
    """Forwards to a real transport; `rewrite`, when given, changes each command on the way (a
    test pointing the real head node's CLI at another slurm.conf, say)."""

    def __init__(self, inner: Transport, rewrite: Callable[[Command], Command] | None = None):
        super().__init__()
        self.sent: list[list[Command]] = []  # the commands themselves (users, `otherwise`)
        self.inner = inner
        self._change = rewrite

    @property
    def url(self) -> str:
        return self.inner.url

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        self.batches.append([c.argv for c in commands])
        self.sent.append(list(commands))
        if self._change is not None:
            commands = [self._change(c) for c in commands]
        return await self.inner.run(commands)

    async def aclose(self) -> None:
        await self.inner.aclose()


class MockTransport(_Recording):
    """Answers each command of a batch with `handler(command)` (a result, or an awaitable of
    one); an exception the handler raises is the transport's."""

    def __init__(self, handler: Handler, url: str = "mock://") -> None:
        super().__init__()
        self._handler = handler
        self.url = url

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        self.batches.append([c.argv for c in commands])
        results = []
        for command in commands:
            answer = self._handler(command)
            results.append(await answer if inspect.isawaitable(answer) else answer)
        return results

    async def aclose(self) -> None:
        return None
