"""The ASGI application: GraphQL at /graphql (GraphiQL for browsers), static assets, health."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

from graphql import GraphQLError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.extensions import MaskErrors, ParserCache, ValidationCache
from strawberry.http import GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionResult
from strawberry.types.unset import UnsetType

from resolvers.context import RequestContext
from resolvers.live_context import LiveContext
from resolvers.poller import PollerHub
from resolvers.source import SnapshotSource
from schema import build_schema
from server.graphiql import render_graphiql
from server.live_execution import LiveExecutionContext
from server.response_cache import ResponseCache
from server.settings import Settings
from transport import Transport, open_transport

logger = logging.getLogger("slurm_graphql")

STATIC_DIR = Path(__file__).parent / "static" / "graphiql"
STATIC_PREFIX = "/static/graphiql"


def _should_mask(error: GraphQLError) -> bool:
    """Coded errors were made for clients; everything else is an internal error, logged."""
    if error.extensions and "code" in error.extensions:
        return False
    logger.error("unexpected error at %s", error.path, exc_info=error.original_error)
    return True


class _GraphQLApp(GraphQL[RequestContext, None]):
    def __init__(
        self, sources: Mapping[str, SnapshotSource], settings: Settings, pollers: PollerHub
    ) -> None:
        schema = build_schema(
            [
                lambda: ParserCache(maxsize=1024),
                lambda: ValidationCache(maxsize=1024),
                lambda: MaskErrors(should_mask_error=_should_mask, error_message="internal error"),
            ],
            execution_context_class=LiveExecutionContext,
        )
        super().__init__(
            schema,
            graphql_ide="graphiql" if settings.graphiql else None,
            # WebSocket (both protocols), then server-sent events and multipart over HTTP.
            subscription_protocols=(
                GRAPHQL_TRANSPORT_WS_PROTOCOL,
                GRAPHQL_WS_PROTOCOL,
                GRAPHQL_SSE_PROTOCOL,
                MULTIPART_SUBSCRIPTION_PROTOCOL,
            ),
            max_subscriptions_per_connection=settings.max_subscriptions_per_connection,
        )
        self._pollers = pollers
        self._sources = sources
        self._settings = settings
        self._page = render_graphiql("/graphql", STATIC_PREFIX)
        self._responses = ResponseCache(sources)

    async def execute_single(
        self,
        request: Request,
        request_adapter: Any,
        sub_response: Response,
        context: RequestContext,
        root_value: None,
        request_data: GraphQLRequestData,
    ) -> ExecutionResult:
        key = (
            ResponseCache.key(
                request_data.query, request_data.operation_name, request_data.variables
            )
            if self._settings.response_cache
            else None
        )
        if key is not None and (cached := self._responses.get(key)) is not None:
            return cached
        result: ExecutionResult = await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )
        if key is not None:
            self._responses.put(key, result, context.snapshots_used(), context.jobs_listed)
        return result

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        return LiveContext(
            sources=self._sources,
            max_page_size=self._settings.max_page_size,
            pollers=self._pollers,
            per_connection=isinstance(request, WebSocket),
        )

    async def on_ws_connect(self, context: RequestContext) -> UnsetType | dict[str, object] | None:
        """Where WebSocket authentication plugs in: `context.connection_params` holds the
        client's `connection_init` payload (e.g. `{"Authorization": "Bearer …"}`); raising
        strawberry's ConnectionRejectionError refuses the connection (close code 4403)."""
        return UnsetType()  # acknowledge with no payload

    def should_render_graphql_ide(self, request: BaseRequestProtocol) -> bool:
        """A browser navigating to /graphql gets GraphiQL, also with `?query=` (a shared link);
        scripts asking for JSON (or `*/*` with a query, as curl does) get the query executed."""
        if request.method != "GET":
            return False
        accept = request.headers.get("accept", "")
        if "text/html" in accept:
            return True
        return "*/*" in accept and request.query_params.get("query") is None

    async def render_graphql_ide(self, request: Request) -> Response:
        return HTMLResponse(self._page)


def create_app(settings: Settings, transports: Mapping[str, Transport] | None = None) -> Starlette:
    """The app for `settings`; `transports` replaces opening them from their URLs (tests)."""
    sources: dict[str, SnapshotSource] = {}
    pollers = PollerHub(sources, settings.poll_interval, settings.subscriber_queue)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened: list[Transport] = []
        for name, url in settings.clusters:
            transport = (transports or {}).get(name)
            if transport is None:
                transport = open_transport(url)
                opened.append(transport)
            sources[name] = SnapshotSource(name, transport, ttl=settings.cache_ttl)
        try:
            yield
        finally:
            await pollers.aclose()
            for source in sources.values():
                await source.aclose()
            for transport in opened:
                await transport.aclose()
            sources.clear()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    graphql_app = _GraphQLApp(sources, settings, pollers)
    return Starlette(
        routes=[
            Route("/graphql", graphql_app, methods=["GET", "POST"]),
            WebSocketRoute("/graphql", graphql_app),
            Route("/healthz", healthz),
            Mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="graphiql-assets"),
        ],
        # GraphiQL's bundle is 3.5 MB and job listings are repetitive JSON: both shrink ~5x.
        # A moderate level keeps compressing a 10,000-job answer cheap next to executing it.
        # Streamed subscriptions (multipart, like SSE) must reach the client event by event.
        middleware=[
            Middleware(
                GZipMiddleware,
                minimum_size=1024,
                compresslevel=5,
                exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, "multipart/mixed"),
            )
        ],
        lifespan=lifespan,
    )


__all__ = ["create_app"]
