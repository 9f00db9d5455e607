"""The ASGI application: GraphQL at /graphql (GraphiQL for browsers), static assets, health."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
from collections.abc import AsyncIterator, Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, cast

from cross_web import HTTPException
from graphql import GraphQLError, GraphQLSyntaxError
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import DEFAULT_EXCLUDED_CONTENT_TYPES, GZipMiddleware
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send
from starlette.websockets import WebSocket
from strawberry.asgi import GraphQL
from strawberry.exceptions import ConnectionRejectionError
from strawberry.extensions import (
    AddValidationRules,
    DisableIntrospection,
    MaskErrors,
    SchemaExtension,
)
from strawberry.http import GraphQLHTTPResponse, GraphQLRequestData
from strawberry.http.base import BaseRequestProtocol
from strawberry.http.streaming import AsyncTextStream, HTTPStreamTransport
from strawberry.subscriptions import (
    GRAPHQL_SSE_PROTOCOL,
    GRAPHQL_TRANSPORT_WS_PROTOCOL,
    GRAPHQL_WS_PROTOCOL,
    MULTIPART_SUBSCRIPTION_PROTOCOL,
)
from strawberry.types import ExecutionResult, SubscriptionExecutionResult
from strawberry.types.unset import UnsetType

from resolvers.audit import audit_refusal
from resolvers.bounds import KnownSizes
from resolvers.context import RequestContext
from resolvers.history_listings import ListingCache
from resolvers.identity import Identity
from resolvers.live_context import LiveContext
from resolvers.poller import PollerHub
from resolvers.shared import SharedSnapshots
from resolvers.source import SnapshotSource
from schema import build_schema
from server.auth import (
    ApiGatewayAuthenticator,
    Authenticator,
    JwtAuthenticator,
    TokenAuthenticator,
)
from server.auth_failures import AuthFailures
from server.authentication import Authentication, AuthenticationMiddleware
from server.body_limit import BodyLimitMiddleware
from server.budget import Budget, BudgetedExecutionContext
from server.channel_limits import ChannelLimitMiddleware, ChannelLimits, client_key
from server.client_address import client_address
from server.client_errors import (
    GRAPHQL_PARSE_FAILED,
    GRAPHQL_VALIDATION_FAILED,
    client_error_response,
    is_client_error,
    parse_request_json,
)
from server.credentials import ConnectionContext, until_expiry
from server.documents import CachedDocuments, DocumentCache
from server.execution import LeanExecutionContext
from server.floor import IdentityRefused
from server.graphiql import GRAPHIQL_CSP, render_graphiql
from server.health import Readiness, readyz_endpoint
from server.hosts import HostCheckMiddleware
from server.limits import CostLimit, Limits, limits_rule
from server.message_limit import MessageLimitMiddleware, decode_message
from server.metrics_access import token_required
from server.observe import (
    ObserveMiddleware,
    RequestObserver,
    current_ids,
    current_request,
    note_result,
)
from server.operations import Operation, OperationOf
from server.origins import OriginPolicy, OriginPolicyMiddleware
from server.persisted import (
    PersistedQueries,
    PersistedQueryRefused,
    PersistedRequest,
    check_manifest,
    load_manifest,
)
from server.persisted_http import cache_control, rewrite
from server.rate_limit import RateLimiter
from server.response_cache import ResponseCache
from server.round_trips import RoundTripListener, WatchedTransport
from server.security_headers import SecurityHeadersMiddleware
from server.settings import Settings
from server.shared_limits import SharedRateLimit, SharedStreams
from server.shared_state import open_shared_state
from server.ui import render_ui, ui_csp
from server.ui_manifest import ui_manifest
from server.ws_limits import LimitedTransportWSHandler, LimitedWSHandler
from server.ws_observe import NoteOperation, note_stream, note_stream_result
from transport import Transport, open_transport

logger = logging.getLogger("slurm_graphql.errors")


class RequestGuard(Protocol):
    """Looks at an authenticated HTTP request before it executes: answers it itself (and
    returns None), or returns the `receive` to serve it with (replaying what it read)."""

    async def __call__(
        self, scope: Scope, receive: Receive, send: Send, operation_of: OperationOf
    ) -> Receive | None: ...


MASKED = "internal error"

STATIC_DIR = Path(__file__).parent / "static" / "graphiql"
STATIC_PREFIX = "/static/graphiql"
# Our own start-up script and layout for GraphiQL's page: scripts/vendor-graphiql replaces
# everything in STATIC_DIR.
PAGE_DIR = Path(__file__).parent / "static" / "page"
PAGE_PREFIX = "/static/page"
# The dashboard's modules and style (server/ui.py), served only when SLURM_GRAPHQL_UI is on.
UI_DIR = Path(__file__).parent / "static" / "ui"
UI_PREFIX = "/ui/static"


def _should_mask(error: GraphQLError) -> bool:
    """Coded errors were made for clients, and so are graphql-core's own parse and validation
    errors (they wrap no exception) and strawberry's refusal of an operation type the protocol
    does not run (a query over graphql-ws); anything else is an internal error (logged once, by
    _log_unexpected)."""
    if error.extensions and "code" in error.extensions:
        return False
    return error.original_error is not None and not is_client_error(error)


def _log_unexpected(errors: list[GraphQLError]) -> None:
    """Each unexpected error once, with its stack and the request's id (which the client's
    masked error carries too); strawberry would log it a second time, without the id."""
    record = current_request.get()
    for error in errors:
        logger.error(
            "unexpected error at %s (request_id=%s)",
            error.path,
            record.request_id if record else None,
            exc_info=error.original_error,
        )


class _GraphQLApp(GraphQL[RequestContext, None]):
    # Each WebSocket operation spends the client's rate limit and holds a subscription slot.
    graphql_transport_ws_handler_class = LimitedTransportWSHandler
    graphql_ws_handler_class = LimitedWSHandler

    def __init__(
        self,
        sources: Mapping[str, SnapshotSource],
        settings: Settings,
        pollers: PollerHub,
        authentication: Authentication,
        channel_limits: ChannelLimits,
        guard: RequestGuard | None = None,
    ) -> None:
        self._guard = guard
        # Shared with the route's middleware, which has authenticated and limited each request
        # by the time it arrives here (create_app); what only the app sees uses them too: a
        # WebSocket's connection_init and operations (server/ws_limits.py).
        self.authentication = authentication
        self.auth_failures = authentication.failures
        self.credential_check = authentication.credential_check
        self.channel_limits = channel_limits
        limits = Limits(
            max_depth=settings.max_depth,
            max_aliases=settings.max_aliases,
            max_cost=settings.max_cost,
            max_page_size=settings.max_page_size,
            assumed_nodes=settings.assumed_nodes,
            assumed_jobs=settings.assumed_jobs,
            max_output_reads=settings.max_output_reads,
            max_output_bytes=settings.max_output_bytes,
        )
        # Parses (within the document caps) and validates, keeping what authenticated requests
        # sent; without authentication configured (loopback only) every request counts as such.
        self.documents = DocumentCache(
            max_bytes=settings.max_document_bytes,
            max_tokens=settings.max_tokens,
            capacity=settings.document_cache_bytes,
        )
        # One rule class for the app's life: a class made per request is cyclic garbage (a type
        # refers to itself through its MRO and dict) that only the cyclic collector frees.
        limits_checked = limits_rule(limits)
        extensions: list[Callable[[], SchemaExtension]] = [
            lambda: AddValidationRules([limits_checked]),
            lambda: CachedDocuments(self.documents, self.document_owner),
            # After validation, on every request: the cost depends on the cluster's size.
            lambda: CostLimit(
                limits=limits,
                sources=sources,
                documents=self.documents,
                owner_of=self.document_owner,
            ),
            lambda: MaskErrors(should_mask_error=_should_mask, error_message=MASKED),
            # Which operation each request or WebSocket operation ran, for its log line.
            NoteOperation,
        ]
        if not settings.introspection:
            extensions.append(DisableIntrospection)
        executor = LeanExecutionContext if settings.fast_execution else BudgetedExecutionContext
        executor_class = executor.with_budget(
            Budget(
                max_fields=settings.max_fields,
                max_seconds=settings.max_seconds,
                max_output_reads=settings.max_output_reads,
                max_output_bytes=settings.max_output_bytes,
            )
        )
        # The lean executor's shortcut of each field of the schema (server/execution.py).
        self.field_shortcuts = (
            executor_class.shortcuts if issubclass(executor_class, LeanExecutionContext) else None
        )
        schema = build_schema(
            extensions,
            on_unexpected=_log_unexpected,
            execution_context_class=executor_class,
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
        # Who a request is until it proves otherwise: it may only read (schema/mutation.py,
        # RequestContext.output_reader refuse the rest).
        self._anonymous = Identity.anonymous(settings.anonymous_user)
        self._sources = sources
        self._settings = settings
        manifest = load_manifest(settings.persisted_manifest) if settings.persisted_manifest else {}
        if settings.ui:
            # The dashboard's own documents (server/ui_manifest.py): allowed beside the
            # operator's, so SLURM_GRAPHQL_PERSISTED_ONLY and /ui can run together.
            manifest = {**ui_manifest(), **manifest}
        check_manifest(manifest, schema._schema)  # validated once, at start-up
        for document in manifest.values():
            self.documents.pin(document)  # then parsed, validated and costed once per process
        self.persisted = PersistedQueries(
            manifest, only=settings.persisted_only, max_document_bytes=settings.max_document_bytes
        )
        self._page = render_graphiql("/graphql", STATIC_PREFIX, PAGE_PREFIX)
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
        selected = self.documents.operation(
            request_data.query, request_data.operation_name, owner=self.document_owner(context)
        )
        key = (
            ResponseCache.key(
                request_data.query,
                request_data.operation_name,
                request_data.variables,
                context.identity.cache_key,
                selected,
            )
            if self._settings.response_cache
            else None
        )
        if key is not None and (cached := self._responses.get(key)) is not None:
            note_result(selected, request_data.operation_name, cached, cached=True)
            return cached
        result: ExecutionResult = await super().execute_single(
            request, request_adapter, sub_response, context, root_value, request_data
        )
        if key is not None and context.cacheable:
            self._responses.put(key, result, context.snapshots_used(), context.jobs_listed)
        note_result(selected, request_data.operation_name, result)
        return result

    async def execute_operation(
        self,
        request: Request,
        request_adapter: Any,
        request_data: GraphQLRequestData | list[GraphQLRequestData],
        context: RequestContext,
        root_value: None,
        sub_response: Response,
    ) -> Any:
        # A streamed operation (SSE, multipart) never reaches execute_single: its request learns
        # here that it streams (NoteOperation, what it runs), and in process_result how each
        # event went.
        if isinstance(request_data, GraphQLRequestData) and request_data.protocol != "http":
            note_stream(request_data.protocol)
        return await super().execute_operation(
            request, request_adapter, request_data, context, root_value, sub_response
        )

    def keeps(self, context: RequestContext) -> bool:
        """Whether the documents of this request's caller may be cached: it authenticated, or
        the server asks nobody to (loopback only)."""
        return not self.authentication.required or context.identity.authenticated

    def document_owner(self, context: RequestContext) -> str | None:
        """Whose parsed documents this request's are (server/documents.py: kept apart per
        identity); None when they may not be kept."""
        return context.identity.cache_key if self.keeps(context) else None

    def is_websocket_origin_allowed(self, request: WebSocket, origin: str) -> bool:
        """server/origins.py has decided by now, against the allow-list; strawberry's own check
        would also let in any origin naming the request's Host, which DNS rebinding controls."""
        return True

    def identity_key(self, context: RequestContext) -> str | None:
        """The key of the context's authenticated identity; None for anyone else."""
        if not context.identity.authenticated:
            return None
        return context.identity.cache_key

    def channel_key(self, context: RequestContext, scope: Scope) -> str:
        """Whose limits a WebSocket operation spends: its identity's, else its address's."""
        return client_key(self.identity_key(context), scope)

    def persisted_payload(self, payload: Any, context: RequestContext) -> dict[str, Any] | None:
        """A WebSocket operation's persisted document put in its payload; the error refusing
        it (the allow-list, an unknown hash), or None."""
        if not isinstance(payload, dict):
            return None  # the protocol handler refuses it
        try:
            request = PersistedRequest.of(payload.get("query"), payload.get("extensions"))
            document = self.persisted.resolve(request, self.keeps(context))
        except PersistedQueryRefused as refused:
            error: dict[str, Any] = refused.body()["errors"][0]
            return error
        if document is not None:
            payload["query"] = document
        return None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        # Authenticated and within its limits by now (the route's middleware, create_app).
        if scope["type"] == "http" and scope.get("method") in ("GET", "POST"):
            keep = not self.authentication.required or "identity" in scope.get("state", {})
            resolved = await rewrite(scope, receive, send, self.persisted, keep)
            if resolved is None:
                return  # refused: PersistedQueryNotFound, a wrong hash, the allow-list
            receive = resolved
            if scope["method"] == "GET":
                send = cache_control(
                    send, not self.authentication.required, int(self._settings.cache_ttl)
                )
        if scope["type"] == "http" and self._guard is not None:
            # Authenticated (or the server asks nobody to), and within the rate limit: only now
            # may the guard read the body and parse what it holds.
            state = scope.get("state", {})
            keep = not self.authentication.required or "identity" in state
            owner = (state.get("identity") or self._anonymous).cache_key if keep else None

            def operation_in(query: str, name: str | None) -> Operation | None:
                return self.documents.operation(query, name, owner=owner)

            replay = await self._guard(scope, receive, send, operation_in)
            if replay is None:
                return  # answered by the guard
            receive = replay
        if scope["type"] == "http":
            # As strawberry's own __call__, but its refusals of malformed requests are coded.
            try:
                response = await self.run(Request(scope, receive))
            except HTTPException as exc:
                response = client_error_response(exc.status_code, exc.reason)
            await response(scope, receive, send)
            return
        await super().__call__(scope, receive, send)

    def parse_json(self, data: str | bytes) -> Any:
        return parse_request_json(data)

    def decode_json(self, data: str | bytes) -> object:
        # WebSocket messages only (HTTP bodies go through parse_json): the handlers close the
        # socket with 4400 on MalformedMessage (server/ws_limits.py).
        return decode_message(data)

    async def get_context(
        self, request: Request | WebSocket, response: Response | WebSocket
    ) -> RequestContext:
        # Authenticated by the route's middleware (server/authentication.py), or anonymous:
        # without authentication configured, and (with it) for GraphiQL's page, which runs
        # nothing, and a WebSocket until its connection_init payload authenticates it
        # (on_ws_connect).
        state = request.scope.get("state", {})
        identity = state.get("identity") or self._anonymous
        common: dict[str, Any] = {
            "sources": self._sources,
            "max_page_size": self._settings.max_page_size,
            "max_history_days": self._settings.max_history_days,
            "identity": identity,
            "aws_cli": self._settings.aws_cli,
            "ids": current_ids,
            "own_jobs_only": self._settings.job_visibility == "own",
            "admins_read_output": self._settings.admins_read_output,
            "pollers": self._pollers,
        }
        if isinstance(request, WebSocket):
            # Each operation on it presents its credential again (server/credentials.py).
            return ConnectionContext(
                **common,
                per_connection=True,
                address=client_address(request.scope),
                authorization=state.get("authorization"),
            )
        return LiveContext(**common)

    async def on_ws_connect(self, context: RequestContext) -> UnsetType | dict[str, object] | None:
        """WebSocket authentication: a token in the `Authorization` header of the upgrade, or
        in the `connection_init` payload (`{"Authorization": "Bearer …"}`), as browsers cannot
        set headers on a WebSocket. Without a known token the connection is refused (4403), and
        so it is for an identity below the floor (4403, PERMISSION_DENIED, audited)."""
        if self.authentication.required and not context.identity.authenticated:
            params = context.connection_params if isinstance(context, LiveContext) else None
            presented = None
            if isinstance(params, Mapping):
                presented = params.get("Authorization") or params.get("authorization")
            authorization = presented if isinstance(presented, str) else None
            address = context.address if isinstance(context, ConnectionContext) else ""
            try:
                identity = await self.authentication.authenticate(
                    {"client": (address, 0)}, authorization, "websocket"
                )
            except IdentityRefused as refused:
                audit_refusal(context.ids(), refused.claimed, refused.reason, "PERMISSION_DENIED")
                raise ConnectionRejectionError({"code": "PERMISSION_DENIED"}) from None
            if identity is None:
                raise ConnectionRejectionError({"code": "UNAUTHENTICATED"})
            context.identity = identity
            if isinstance(context, ConnectionContext):
                context.authorization = authorization
        return UnsetType()  # acknowledge with no payload

    async def process_result(
        self, request: Request, result: ExecutionResult
    ) -> GraphQLHTTPResponse:
        """Every error a client sees carries a code: graphql-core's own get one here."""
        for error in result.errors or ():
            if not (error.extensions and "code" in error.extensions) and error.message != MASKED:
                error.extensions = {**(error.extensions or {}), "code": _code_of(error)}
        response = await super().process_result(request, result)
        note_stream_result(bool(result.errors))
        for formatted in response.get("errors") or ():
            if isinstance(formatted, dict) and formatted.get("message") == MASKED:
                # The log line with the stack carries the same id.
                record = current_request.get()
                extensions = formatted.setdefault("extensions", {})
                extensions["code"] = "INTERNAL_SERVER_ERROR"
                extensions["requestId"] = record.request_id if record else None
        return response

    def _stream_result(
        self, request: Request, result: SubscriptionExecutionResult, transport: HTTPStreamTransport
    ) -> AsyncTextStream:
        """A streamed (SSE, multipart) subscription ends when its credential expires."""
        identity = request.scope.get("state", {}).get("identity")
        if identity is not None and identity.expires_at is not None:
            # An async generator is what the protocol describes; its __aiter__ is typed wider.
            result = cast(
                SubscriptionExecutionResult,
                until_expiry(result, identity.expires_at, self.credential_check.clock),
            )
        return super()._stream_result(request, result, transport)

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
        return HTMLResponse(self._page, headers={"Content-Security-Policy": GRAPHIQL_CSP})


def _ui_routes(settings: Settings) -> list[BaseRoute]:
    """/ui (the dashboard's shell) and its modules when SLURM_GRAPHQL_UI is on; else nothing."""
    if not settings.ui:
        return []
    issuer = settings.jwt.issuer if settings.jwt is not None else None
    oidc = (issuer, settings.ui_oidc_client_id) if issuer and settings.ui_oidc_client_id else None
    page = render_ui(UI_PREFIX, "/graphql", settings.auth_mode, oidc)
    csp = ui_csp(oidc[0] if oidc else None)

    async def ui(request: Request) -> Response:
        # The shell names no user and holds no data: the same bytes for everyone.
        return HTMLResponse(
            page, headers={"Content-Security-Policy": csp, "Cache-Control": "no-cache"}
        )

    return [
        Route("/ui", ui),
        Route("/ui/", ui),
        Mount(UI_PREFIX, StaticFiles(directory=UI_DIR), name="ui-assets"),
    ]


def _cors(settings: Settings) -> list[Middleware]:
    """CORS for the listed origins only; none listed, no CORS headers at all. Tokens travel in
    the Authorization header, not cookies, so credentials need not be allowed."""
    if not settings.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=("GET", "POST", "OPTIONS"),
            allow_headers=("Authorization", "Content-Type", "X-Request-Id"),
            expose_headers=("X-Request-Id",),
        )
    ]


def rate_limiter(settings: Settings) -> RateLimiter | None:
    """None when SLURM_GRAPHQL_RATE_LIMIT is unset or 0."""
    if settings.rate_limit <= 0:
        return None
    return RateLimiter(settings.rate_limit, settings.rate_burst or math.ceil(settings.rate_limit))


def build_authenticator(settings: Settings) -> Authenticator | None:
    """None: anonymous mode, where every request is anonymous and may only read."""
    if settings.apigateway is not None:
        return ApiGatewayAuthenticator(settings.apigateway)
    if settings.jwt is not None:
        return JwtAuthenticator(settings.jwt)
    if settings.tokens:
        return TokenAuthenticator(settings.tokens)
    return None


def _code_of(error: GraphQLError) -> str:
    """The code of an error graphql-core made without one, by its type: the parser's, or the
    validator's (those that stop an executor being built are coded in server/budget.py)."""
    if isinstance(error, GraphQLSyntaxError):
        return GRAPHQL_PARSE_FAILED
    return GRAPHQL_VALIDATION_FAILED


def _host_check(settings: Settings) -> list[Middleware]:
    """Anonymous mode answers only to loopback Host names and SLURM_GRAPHQL_ALLOWED_HOSTS (DNS
    rebinding); other modes check the Host header only when that list is set."""
    anonymous = settings.auth_mode == "none"
    if not anonymous and not settings.allowed_hosts:
        return []
    return [Middleware(HostCheckMiddleware, allowed=settings.allowed_hosts, loopback=anonymous)]


def create_app(
    settings: Settings,
    transports: Mapping[str, Transport] | None = None,
    guard: RequestGuard | None = None,
) -> Starlette:
    """The app for `settings`; `transports` replaces opening them from their URLs (tests);
    `guard` sees each authenticated /graphql request before it executes (the Lambda handler)."""
    sources: dict[str, SnapshotSource] = {}
    # Readiness and metrics outlive a lifespan: Mangum runs one per Lambda invocation.
    readiness = Readiness(tuple(name for name, _ in settings.clusters), settings.ready_interval)
    listeners: list[RoundTripListener] = [readiness.record]
    observers: list[RequestObserver] = []
    extra_routes: list[Route] = []
    pollers = PollerHub(sources, settings.poll_interval, settings.subscriber_queue)
    metrics_app = None
    metrics_shared = None
    # The transports as opened (not wrapped), by cluster, while the lifespan runs.
    raw_transports: dict[str, Transport] = {}
    if settings.metrics:
        from server.metrics import Metrics  # prometheus_client only when metrics are on

        metrics = Metrics(settings.metrics_max_operations)
        metrics.watch_sources(sources)
        metrics.watch_pollers(pollers)
        metrics.watch_sessions(raw_transports)
        metrics_shared = metrics.watch_shared(sources)
        listeners.append(metrics.observe_round_trip)
        observers.append(metrics.observe_request)
        route = Route("/metrics", token_required(metrics.endpoint, settings.metrics_token))
        if settings.metrics_port is None:
            extra_routes.append(route)
        else:
            metrics_app = Starlette(routes=[route])  # `serve` routes its own port here
    # What snapshots told of each cluster's size bounds the cost of queries; like readiness, it
    # outlives a lifespan, so a Lambda event does not start unknowing.
    sizes = {name: KnownSizes() for name, _ in settings.clusters}

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        opened: list[Transport] = []
        watched: dict[str, Transport] = {}
        shared = None
        if settings.redis_url is not None:
            shared = await open_shared_state(settings.redis_url)
            readiness.shared = shared
            if channel_limits.rate is not None:
                channel_limits.shared_rate = SharedRateLimit(
                    shared, channel_limits.rate.rate, channel_limits.rate.burst
                )
            channel_limits.streams.shared = SharedStreams(shared)
            renewing = asyncio.ensure_future(channel_limits.streams.shared.renew_forever())
            watching = asyncio.ensure_future(shared.watch())
            if metrics_shared is not None:
                metrics_shared.append(shared)
        for name, url in settings.clusters:
            transport = (transports or {}).get(name)
            if transport is None:
                transport = open_transport(url, min_uid=settings.min_uid)
                opened.append(transport)
            raw_transports[name] = transport
            watched[name] = WatchedTransport(transport, name, listeners)
            sources[name] = SnapshotSource(
                name,
                watched[name],
                ttl=settings.cache_ttl,
                sizes=sizes[name],
                listings=ListingCache(settings.history_listing_ttl),
                shared=None
                if shared is None
                else SharedSnapshots(shared, name, settings.cache_ttl, settings.poll_interval),
            )
        readiness.attach(watched)
        try:
            yield
        finally:
            await pollers.aclose()
            await readiness.detach()
            for source in sources.values():
                await source.aclose()
            for transport in opened:
                await transport.aclose()
            sources.clear()
            raw_transports.clear()
            if shared is not None:
                readiness.shared = None
                channel_limits.shared_rate = None
                channel_limits.streams.shared = None
                for task in (renewing, watching):
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
                if metrics_shared is not None:
                    metrics_shared.remove(shared)
                await shared.aclose()

    async def healthz(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    authentication = Authentication(
        build_authenticator(settings),
        settings.min_uid,
        AuthFailures(settings.auth_failures_per_minute),
    )
    channel_limits = ChannelLimits(
        rate_limiter(settings),
        max_streams=settings.max_subscriptions_per_user,
        max_sockets=settings.max_websockets_per_client,
    )
    graphql_app = _GraphQLApp(sources, settings, pollers, authentication, channel_limits, guard)
    # Who asks, then whether they may ask now: each identity spends its own rate limit.
    graphql_middleware = [
        Middleware(AuthenticationMiddleware, authentication=authentication),
        Middleware(ChannelLimitMiddleware, limits=channel_limits),
    ]
    app = Starlette(
        routes=[
            Route("/graphql", graphql_app, methods=["GET", "POST"], middleware=graphql_middleware),
            WebSocketRoute("/graphql", graphql_app, middleware=graphql_middleware),
            Route("/healthz", healthz),
            Route("/readyz", readyz_endpoint(readiness)),
            *extra_routes,
            Mount(STATIC_PREFIX, StaticFiles(directory=STATIC_DIR), name="graphiql-assets"),
            Mount(PAGE_PREFIX, StaticFiles(directory=PAGE_DIR), name="graphiql-page"),
            *_ui_routes(settings),
        ],
        middleware=[
            # Outermost, so a request's duration and log line include everything below.
            Middleware(ObserveMiddleware, observers=tuple(observers)),
            # Next, so every answer carries them, refusals included.
            Middleware(SecurityHeadersMiddleware),
            # Before CORS and everything else: a rebound name gets no answer at all.
            *_host_check(settings),
            # Cross-site POSTs without authentication, and every browser's WebSocket.
            Middleware(OriginPolicyMiddleware, policy=OriginPolicy.of(settings)),
            *_cors(settings),
            # Before anything reads a body, so no more than the cap is ever held in memory.
            Middleware(
                BodyLimitMiddleware,
                max_bytes=settings.max_body_bytes,
                read_timeout=settings.body_timeout,
            ),
            # The same for WebSocket messages and query strings: percent-encoding takes at most
            # three bytes for one, so a GET can carry any document within its cap.
            Middleware(
                MessageLimitMiddleware,
                max_message_bytes=settings.max_message_bytes,
                max_query_bytes=3 * settings.max_document_bytes,
            ),
            # GraphiQL's bundle is 3.5 MB and job listings are repetitive JSON: both shrink ~5x.
            # A moderate level keeps compressing a 10,000-job answer cheap next to executing it.
            # Streamed subscriptions (multipart, like SSE) must reach the client event by event.
            Middleware(
                GZipMiddleware,
                minimum_size=1024,
                compresslevel=5,
                exclude_content_types=(*DEFAULT_EXCLUDED_CONTENT_TYPES, "multipart/mixed"),
            ),
        ],
        lifespan=lifespan,
    )
    app.state.metrics_app = metrics_app  # set with SLURM_GRAPHQL_METRICS_PORT
    app.state.readiness = readiness
    # What the documents and persisted-query caches hold and did (tests, operators' debugging).
    app.state.documents = graphql_app.documents
    app.state.persisted = graphql_app.persisted
    app.state.field_shortcuts = graphql_app.field_shortcuts
    return app


__all__ = ["create_app"]
