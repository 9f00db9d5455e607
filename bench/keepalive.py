"""A minimal keep-alive HTTP/1.1 client over TCP or a unix socket, so load generation costs little.

Both servers the benches measure (uvicorn, slurmrestd) answer with a Content-Length; anything
else (chunked bodies, closed connections) is an error here rather than a silent short read.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any


class Client:
    """One connection; `request` sends and reads one exchange at a time."""

    def __init__(self, port: int | None = None, unix_socket: str | None = None) -> None:
        if (port is None) == (unix_socket is None):
            raise ValueError("give a port or a unix socket")
        self._port = port
        self._socket = unix_socket

    async def __aenter__(self) -> Client:
        if self._socket is not None:
            self._reader, self._writer = await asyncio.open_unix_connection(
                self._socket, limit=2**20
            )
        else:
            self._reader, self._writer = await asyncio.open_connection(
                "127.0.0.1", self._port, limit=2**20
            )
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._writer.close()

    async def request(self, method: str, path: str, body: bytes = b"") -> bytes:
        head = f"{method} {path} HTTP/1.1\r\nHost: localhost\r\n"
        if body:
            head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
        self._writer.write(head.encode() + b"\r\n" + body)
        answer = await self._reader.readuntil(b"\r\n\r\n")
        if not answer.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(answer.decode(errors="replace").splitlines()[0])
        length = next(
            int(line.split(b":")[1]) for line in answer.split(b"\r\n")
            if line.lower().startswith(b"content-length")
        )  # fmt: skip
        return await self._reader.readexactly(length)

    async def graphql(self, query: str, variables: dict[str, Any] | None = None) -> Any:
        """POST a query, decode the answer (a step every user pays), fail on `errors`."""
        body = graphql_body(query, variables)
        answer = json.loads(await self.request("POST", "/graphql", body))
        if answer.get("errors"):
            raise RuntimeError(str(answer["errors"])[:300])
        return answer["data"]

    async def get_json(self, path: str) -> Any:
        return json.loads(await self.request("GET", path))


def graphql_body(query: str, variables: dict[str, Any] | None = None) -> bytes:
    if variables is None:
        return json.dumps({"query": query}).encode()
    return json.dumps({"query": query, "variables": variables}).encode()


@dataclass
class Target:
    """A server a bench measures: its PID (for its RSS) and where it listens."""

    name: str
    pid: int
    port: int | None = None
    socket: str | None = None

    def client(self) -> Client:
        return Client(port=self.port, unix_socket=self.socket)
