"""A transport wrapper that records every batch it forwards, to count round trips."""

from __future__ import annotations

from collections.abc import Sequence

from transport import Command, CommandResult, Transport


class CountingTransport:
    """Forwards to a real transport; `batches` holds the argv lists of every call."""

    def __init__(self, inner: Transport) -> None:
        self.inner = inner
        self.batches: list[list[tuple[str, ...]]] = []

    @property
    def url(self) -> str:
        return self.inner.url

    @property
    def calls(self) -> int:
        return len(self.batches)

    async def run(self, commands: Sequence[Command]) -> list[CommandResult]:
        self.batches.append([c.argv for c in commands])
        return await self.inner.run(commands)

    async def aclose(self) -> None:
        await self.inner.aclose()
