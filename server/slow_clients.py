"""Connections that hold the server without asking anything of it: `serve`'s HTTP protocol.

uvicorn bounds an idle keep-alive connection (`timeout_keep_alive`) and, with
`limit_concurrency`, answers 503 past a number of open connections; it has no limit on how long
a request's head may take, so a client that opens a connection and sends nothing, or dribbles
a header a byte at a time (slowloris), holds a connection for as long as it likes, and enough
of them fill `limit_concurrency` for everyone. This protocol adds:

- a head deadline: a request's line and headers must be complete within `header_timeout`
  seconds of the connection opening (first request) or of its first byte (later requests on a
  kept-alive connection), else the connection is closed without an answer;
- a per-address cap: at most `max_per_address` open HTTP connections from one peer address;
  more are closed as soon as they open, so one client cannot take the whole of
  `limit_concurrency`. Peers uvicorn trusts for X-Forwarded-For (FORWARDED_ALLOW_IPS: a load
  balancer or proxy that speaks for many clients) are not capped per address.

A connection upgraded to a WebSocket leaves this protocol: the app counts WebSockets per
address and identity (server/channel_limits.py). Body read timeouts are the app's
(server/body_limit.py), which answers 408.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.config import Config
from uvicorn.middleware.proxy_headers import _TrustedHosts
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
from uvicorn.server import ServerState


class AddressCounts:
    """Open connections per peer address, for one server."""

    def __init__(self, limit: int, exempt: _TrustedHosts) -> None:
        self.limit = limit
        self._exempt = exempt
        self._open: dict[str, int] = {}

    def admit(self, address: str) -> bool:
        if address in self._exempt:
            return True
        held = self._open.get(address, 0)
        if held >= self.limit:
            return False
        self._open[address] = held + 1
        return True

    def leave(self, address: str) -> None:
        if address in self._exempt:
            return
        held = self._open.get(address, 0) - 1
        if held > 0:
            self._open[address] = held
        else:
            self._open.pop(address, None)


def guarded_protocol(
    header_timeout: float, max_per_address: int, trusted: str | list[str]
) -> type[asyncio.Protocol]:
    """An httptools protocol class with a head deadline and a per-address cap; the counts are
    the class's own, so make one per server."""
    counts = AddressCounts(max_per_address, _TrustedHosts(trusted))

    class GuardedProtocol(HttpToolsProtocol):
        def __init__(
            self,
            config: Config,
            server_state: ServerState,
            app_state: dict[str, Any],
            _loop: asyncio.AbstractEventLoop | None = None,
        ) -> None:
            super().__init__(config, server_state, app_state, _loop)
            self._head_timer: asyncio.TimerHandle | None = None
            self._counted: str | None = None

        # uvicorn's own override narrows BaseTransport to Transport in the same way; mypy calls
        # the narrowing unsafe, and it is what the event loop hands a stream protocol.
        def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
            super().connection_made(transport)
            address = self.client[0] if self.client else ""
            if not counts.admit(address):
                transport.abort()  # nothing to say to a client that holds too many already
                return
            self._counted = address
            self._arm()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm()
            self._leave()
            super().connection_lost(exc)

        def on_message_begin(self) -> None:
            super().on_message_begin()
            self._arm()  # a later request on a kept-alive connection: its head starts now

        def on_headers_complete(self) -> None:
            self._disarm()
            super().on_headers_complete()

        def handle_websocket_upgrade(self) -> None:
            self._disarm()
            self._leave()  # the app counts WebSockets from here on
            super().handle_websocket_upgrade()

        def _arm(self) -> None:
            if self._head_timer is None:
                self._head_timer = self.loop.call_later(header_timeout, self._head_too_slow)

        def _disarm(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _leave(self) -> None:
            if self._counted is not None:
                counts.leave(self._counted)
                self._counted = None

        def _head_too_slow(self) -> None:
            self._head_timer = None
            if not self.transport.is_closing():
                self.transport.close()

    return GuardedProtocol


__all__ = ["AddressCounts", "guarded_protocol"]
