"""A real server in the test's event loop, and small GraphQL-over-WebSocket clients for it.

The app runs under uvicorn on a free loopback port inside the test's own event loop, so a test
talks to it over a real socket and can still count what its transport did. The clients speak
graphql-transport-ws (and the legacy graphql-ws) with the `websockets` library; each message is
stamped with the time it arrived, to measure event latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import uvicorn
import websockets
from starlette.applications import Starlette

from tests.support.server import free_port

TRANSPORT_WS = "graphql-transport-ws"
LEGACY_WS = "graphql-ws"


@contextlib.asynccontextmanager
async def serving(app: Starlette) -> AsyncIterator[str]:
    """`app` served by uvicorn on a free loopback port in this loop; yields its http:// URL."""
    port = free_port()
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()
                raise RuntimeError("uvicorn stopped before it started")
            await asyncio.sleep(0.01)
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        await task


@dataclass(frozen=True)
class Message:
    payload: Any  # an object; for graphql-transport-ws errors, a list of errors
    kind: str  # next | error | complete
    received: float  # time.time() when it arrived


class Connection:
    """One WebSocket to /graphql; subscriptions on it are told apart by id."""

    def __init__(self, socket: websockets.ClientConnection, protocol: str) -> None:
        self.socket = socket
        self.protocol = protocol
        self._ids = itertools.count(1)
        self._inboxes: dict[str, asyncio.Queue[Message]] = {}
        self._reader: asyncio.Task[None] | None = None
        self.closed = asyncio.Event()

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        base_url: str,
        protocol: str = TRANSPORT_WS,
        payload: dict[str, Any] | None = None,
        **connect: Any,
    ) -> AsyncIterator[Connection]:
        """`connect` goes to websockets.connect (e.g. `local_addr` to come from 127.0.0.2)."""
        url = base_url.replace("http://", "ws://") + "/graphql"
        async with websockets.connect(
            url,
            subprotocols=[protocol],  # type: ignore[list-item]
            max_queue=None,
            **connect,
        ) as socket:
            connection = cls(socket, protocol)
            await socket.send(json.dumps({"type": "connection_init", "payload": payload or {}}))
            ack = json.loads(await asyncio.wait_for(socket.recv(), 10))
            assert ack["type"] == "connection_ack", ack
            connection._reader = asyncio.create_task(connection._read())
            try:
                yield connection
            finally:
                connection._reader.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await connection._reader

    async def _read(self) -> None:
        try:
            async for raw in self.socket:
                message = json.loads(raw)
                kind = message["type"]
                kind = {"data": "next"}.get(kind, kind)  # graphql-ws says data for next
                if kind in ("ka", "ping", "pong"):
                    continue
                inbox = self._inboxes.get(message.get("id", ""))
                if inbox is not None:
                    inbox.put_nowait(Message(message.get("payload") or {}, kind, time.time()))
        except websockets.ConnectionClosed:
            pass
        finally:
            self.closed.set()

    async def subscribe(self, query: str, **variables: Any) -> Subscription:
        operation_id = str(next(self._ids))
        self._inboxes[operation_id] = asyncio.Queue()
        kind = "subscribe" if self.protocol == TRANSPORT_WS else "start"
        payload = {"query": query, "variables": variables}
        await self.socket.send(json.dumps({"id": operation_id, "type": kind, "payload": payload}))
        return Subscription(self, operation_id)


@dataclass
class Subscription:
    connection: Connection
    id: str

    async def next(self, within: float = 10) -> Message:
        """The next message of this subscription; fails after `within` seconds."""
        inbox = self.connection._inboxes[self.id]
        return await asyncio.wait_for(inbox.get(), within)

    async def until_complete(self, within: float = 30) -> list[Message]:
        """Every message up to and including `complete`."""
        messages: list[Message] = []
        deadline = time.monotonic() + within
        while not messages or messages[-1].kind not in ("complete", "error"):
            messages.append(await self.next(max(0.01, deadline - time.monotonic())))
        return messages

    async def stop(self) -> None:
        kind = "complete" if self.connection.protocol == TRANSPORT_WS else "stop"
        await self.connection.socket.send(json.dumps({"id": self.id, "type": kind}))
