"""The app as an AWS Lambda handler (Mangum), for API Gateway REST and HTTP APIs and ALBs.

Mangum turns each event into one ASGI request and runs the app's lifespan around it. A Lambda
invocation cannot hold a connection open, so subscriptions are refused before execution, with a
coded error that points to the container deployment; the document is parsed here for that, so
the refusal holds whether or not the schema has a Subscription type. That happens only once the
event has authenticated, and within the body and document caps: authenticate, cap, then parse.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qs

from mangum import Mangum
from starlette.responses import JSONResponse
from starlette.types import Message, Receive, Scope, Send

from server.app import create_app
from server.logs import configure_logging
from server.observe import note_refused
from server.operations import Operation, OperationOf
from server.settings import Settings, SettingsError
from transport import Transport, open_transport

SUBSCRIPTIONS_REFUSED = "SUBSCRIPTIONS_NOT_SUPPORTED"
# Anonymous mode (`none`) is for a developer's loopback, never for a public endpoint.
LAMBDA_AUTH_MODES = ("apigateway", "jwt", "tokens")
REFUSAL = (
    "Subscriptions need a long-lived connection, which this API's Lambda deployment (behind "
    "API Gateway) cannot hold. Subscribe through its container deployment (ECS behind an "
    "Application Load Balancer), which serves subscriptions over WebSocket at /graphql."
)


async def refuse_subscriptions(
    scope: Scope, receive: Receive, send: Send, operation_of: OperationOf
) -> Receive | None:
    """The app's guard (server/app.py) under Lambda: a /graphql request whose selected operation
    is a subscription gets a GraphQL error instead of executing; everything else is served.

    It runs after authentication and the rate limit, and reads the body through the body cap
    (past it, the app sees a disconnect and the cap answers 413): an unauthenticated event costs
    no JSON decoding and no parsing, and leaves nothing cached."""
    received: list[Message] = []
    chunks: list[bytes] = []
    if scope["method"] == "POST":
        while True:
            message = await receive()
            received.append(message)
            if message["type"] != "http.request":
                return None  # over the body cap, or gone: nothing to serve
            chunks.append(message.get("body", b""))
            if not message.get("more_body"):
                break
    found = _operations(scope, b"".join(chunks), operation_of)
    subscription = next((o for o in found if o.type == "subscription"), None)
    if subscription is not None:
        note_refused(subscription.type, subscription.name)
        error = {"message": REFUSAL, "extensions": {"code": SUBSCRIPTIONS_REFUSED}}
        await JSONResponse({"errors": [error]})(scope, receive, send)
        return None
    pending = iter(received)

    async def replay() -> Message:
        # The body read above, then whatever the client sends next (a disconnect).
        return next(pending, None) or await receive()

    return replay


def _operations(scope: Scope, body: bytes, operation_of: OperationOf) -> list[Operation]:
    """The operations a GET's query string or a JSON POST (or batch) selects."""
    if scope["method"] == "GET":
        params = parse_qs(scope.get("query_string", b"").decode("latin-1"))
        requests: list[Any] = [{k: v[-1] for k, v in params.items()}]
    else:
        try:
            decoded = json.loads(body)
        except (ValueError, RecursionError):
            return []  # not JSON: the app answers it as it answers any malformed request
        requests = decoded if isinstance(decoded, list) else [decoded]
    found = []
    for request in requests:
        if not isinstance(request, dict):
            continue
        query, name = request.get("query"), request.get("operationName")
        if isinstance(query, str) and (name is None or isinstance(name, str)):
            operation = operation_of(query, name)
            if operation is not None:
                found.append(operation)
    return found


def make_handler(settings: Settings, transports: Mapping[str, Transport] | None = None) -> Mangum:
    """A Lambda handler serving the app for `settings` (transports as in create_app)."""
    # The guard runs inside the request log and metrics, so refusals are logged and counted.
    app = create_app(settings, transports, guard=refuse_subscriptions)
    # "on": a lifespan that fails to start fails the invocation instead of serving without it.
    return Mangum(app, lifespan="on")


def handler_from_environ(environ: Mapping[str, str]) -> Mangum:
    """The handler as deployed: settings and logging from the environment, transports opened
    once for the container. Mangum runs the app's lifespan around every invocation, so
    transports the app opened itself would be opened and closed (boto3 clients and all) each
    time; these live as long as the execution environment does.

    A function behind API Gateway is reachable by anyone who finds its URL, so it refuses to
    start (SettingsError) unless SLURM_GRAPHQL_AUTH names how callers authenticate."""
    mode = environ.get("SLURM_GRAPHQL_AUTH", "").strip().lower()
    if mode not in LAMBDA_AUTH_MODES:
        raise SettingsError(
            f"SLURM_GRAPHQL_AUTH: the Lambda handler needs an explicit authentication mode, one "
            f"of {', '.join(LAMBDA_AUTH_MODES)} (got {mode or 'nothing'}); deploy/lambda.yaml "
            "sets apigateway behind a Cognito authorizer"
        )
    settings = Settings.from_environ(environ)
    # The function's process is ours: the runtime's and the libraries' lines take our format.
    configure_logging(settings.log_format, settings.log_level, whole_process=True)
    transports = {
        name: open_transport(url, min_uid=settings.min_uid) for name, url in settings.clusters
    }
    return make_handler(settings, transports)
