"""Persisted queries at the HTTP edge: a GET's query string or a JSON POST's body rewritten to
carry the resolved document (server/persisted.py), and `Cache-Control` on GET answers.

A GET that reads (strawberry refuses mutations over GET) may be cached by API Gateway or a CDN
for the snapshot cache's TTL: `public` when the server asks nobody to authenticate (every caller
reads the same), `private` as soon as answers depend on who asks (a shared cache must never hand
alice's answer to bob); `no-store` for an answer holding errors, a stream, or anything not 200.
The body has been capped by server/body_limit.py before it is read here.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl, urlencode

from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from server.persisted import PersistedQueries, PersistedQueryRefused, PersistedRequest


def _refusal(refused: PersistedQueryRefused) -> JSONResponse:
    # HTTP 200, as Apollo's and urql's links expect for PersistedQueryNotFound; never cached.
    return JSONResponse(refused.body(), headers={"Cache-Control": "no-store"})


def _resolved(item: Any, queries: PersistedQueries, keep: bool) -> Any:
    """`item` (one request of a body) with its document resolved; PersistedQueryRefused."""
    if not isinstance(item, dict):
        return item  # strawberry refuses it as it does today
    request = PersistedRequest.of(item.get("query"), item.get("extensions"))
    document = queries.resolve(request, keep)
    if document is None or document == item.get("query"):
        return item
    return {**item, "query": document}


async def rewrite(
    scope: Scope, receive: Receive, send: Send, queries: PersistedQueries, keep: bool
) -> Receive | None:
    """The request with its persisted document in place (GET: in `scope`'s query string), as a
    `receive` to read it from; None once a refusal has been sent."""
    try:
        if scope["method"] == "GET":
            pairs = parse_qsl(scope.get("query_string", b"").decode("latin-1"))
            params = dict(pairs)
            extensions: Any = params.get("extensions")
            if extensions is not None:
                try:
                    extensions = json.loads(extensions)
                except (ValueError, RecursionError):
                    raise PersistedQueryRefused(
                        "BAD_USER_INPUT", "extensions is not JSON"
                    ) from None
            request = PersistedRequest.of(params.get("query"), extensions)
            document = queries.resolve(request, keep)
            if document is not None and document != params.get("query"):
                params["query"] = document
                scope["query_string"] = urlencode(params).encode("latin-1", "replace")
            return receive
        if scope["method"] != "POST":
            return receive
        body = await _read_body(receive)
        try:
            data = json.loads(body) if body else None
        except (ValueError, RecursionError):
            data = None  # not JSON, or nested too deep: strawberry answers it as it does today
        if data is not None:
            if isinstance(data, list):
                changed: Any = [_resolved(item, queries, keep) for item in data]
            else:
                changed = _resolved(data, queries, keep)
            if changed is not data and changed != data:
                body = json.dumps(changed).encode()
        return _replay(body, receive)
    except PersistedQueryRefused as refused:
        await _refusal(refused)(scope, receive, send)
        return None


async def _read_body(receive: Receive) -> bytes:
    chunks = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def _replay(body: bytes, rest: Receive) -> Receive:
    """The body once, then what the client does next (a streamed answer waits on it for the
    client to go away)."""
    sent = False

    async def receive() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await rest()

    return receive


def cache_control(send: Send, public: bool, max_age: int) -> Send:
    """`send`, with Cache-Control set on a GET's answer as the module says: a JSON answer is
    held until its body shows whether it holds errors; anything else (a stream) passes as it
    comes, `no-store`."""
    start: Message | None = None

    def headed(held: Message, value: bytes) -> Message:
        headers = [(k, v) for k, v in held.get("headers", []) if k.lower() != b"cache-control"]
        headers += [(b"cache-control", value), (b"vary", b"Authorization")]
        return {**held, "headers": headers}

    async def wrapped(message: Message) -> None:
        nonlocal start
        if message["type"] == "http.response.start":
            if message["status"] == 200 and _json(message.get("headers", [])) and max_age > 0:
                start = message
                return
            await send(headed(message, b"no-store"))
            return
        if start is not None and message["type"] == "http.response.body":
            held, start = start, None
            cacheable = not message.get("more_body", False) and b'"errors"' not in message.get(
                "body", b""
            )
            scope = b"public" if public else b"private"
            value = scope + b", max-age=%d" % max_age if cacheable else b"no-store"
            await send(headed(held, value))
        await send(message)

    return wrapped


def _json(headers: list[tuple[bytes, bytes]]) -> bool:
    return any(
        k.lower() == b"content-type" and v.startswith(b"application/json") for k, v in headers
    )
