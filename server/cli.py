"""`slurm-graphql serve`: run the API with uvicorn."""

from __future__ import annotations

import argparse
import ipaddress
import logging
import os
import sys

import uvicorn
from starlette.applications import Starlette
from starlette.types import ASGIApp

from server.app import build_authenticator, create_app
from server.gc_tuning import tune_for_serving
from server.logs import configure_logging
from server.metrics_access import by_port
from server.origins import OriginPolicy
from server.settings import LOG_LEVELS, Settings, SettingsError
from server.slow_clients import guarded_protocol

logger = logging.getLogger("slurm_graphql.serve")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="slurm-graphql", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    serve = commands.add_parser("serve", help="serve the GraphQL API and GraphiQL")
    # Defaults from the environment, so a container sets them without changing its command.
    env = os.environ
    serve.add_argument(
        "--host",
        default=env.get("SLURM_GRAPHQL_HOST", "127.0.0.1"),
        help="address to bind (SLURM_GRAPHQL_HOST, default 127.0.0.1)",
    )
    serve.add_argument(
        "--port",
        type=int,
        default=env.get("SLURM_GRAPHQL_PORT", "8000"),  # argparse applies `type` to it
        help="port to bind (SLURM_GRAPHQL_PORT, default 8000)",
    )
    serve.add_argument(
        "--keep-alive",
        type=int,
        default=env.get("SLURM_GRAPHQL_KEEP_ALIVE", "5"),
        help="seconds an idle connection stays open (SLURM_GRAPHQL_KEEP_ALIVE, default 5); "
        "behind a load balancer, more than its idle timeout",
    )
    serve.add_argument(
        "--metrics-host",
        default=env.get("SLURM_GRAPHQL_METRICS_HOST", "127.0.0.1"),
        help="address of the metrics port, with SLURM_GRAPHQL_METRICS_PORT "
        "(SLURM_GRAPHQL_METRICS_HOST, default 127.0.0.1)",
    )
    serve.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        help="overrides SLURM_GRAPHQL_LOG_LEVEL (default info)",
    )
    args = parser.parse_args(argv)

    try:
        settings = Settings.from_environ(os.environ)
    except SettingsError as exc:
        print(f"slurm-graphql: {exc}", file=sys.stderr)
        return 2
    if settings.apigateway is not None:
        print(
            "slurm-graphql: SLURM_GRAPHQL_AUTH=apigateway trusts claims only API Gateway can "
            "set; it works under the Lambda handler, not with serve",
            file=sys.stderr,
        )
        return 2
    if build_authenticator(settings) is None and not is_loopback(args.host):
        # Anonymous mode trusts whoever reaches the socket to read the cluster: this host only.
        print(
            f"slurm-graphql: refusing to serve on {args.host} without authentication; set "
            "SLURM_GRAPHQL_AUTH=jwt, SLURM_GRAPHQL_TOKENS or SLURM_GRAPHQL_TOKENS_FILE, or bind "
            "to 127.0.0.1",
            file=sys.stderr,
        )
        return 2
    log_level = args.log_level or settings.log_level
    # The whole process, uvicorn and libraries included, logs in the configured format.
    configure_logging(settings.log_format, log_level, whole_process=True)
    logger.info("GraphiQL: http://%s:%d/graphql", args.host, args.port)
    if settings.graphiql and not OriginPolicy.of(settings).own_pages_open_websockets:
        logger.warning(
            "GraphiQL's subscriptions will be refused: browsers' WebSockets need "
            "SLURM_GRAPHQL_ALLOWED_HOSTS (the names users browse to) or SLURM_GRAPHQL_WS_ORIGINS"
        )
    app = create_app(settings)
    tune_for_serving()
    serve_app(settings, app, args.host, args.port, args.keep_alive, log_level, args.metrics_host)
    return 0


def serve_app(
    settings: Settings,
    app: Starlette,
    host: str,
    port: int,
    keep_alive: int,
    log_level: str,
    metrics_host: str,
) -> None:
    """uvicorn, with the limits on slow and greedy clients (server/slow_clients.py), on the
    API's port and, with SLURM_GRAPHQL_METRICS_PORT, the metrics' own."""
    trusted = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")

    def config(asgi: ASGIApp, bind_host: str, bind_port: int) -> uvicorn.Config:
        return uvicorn.Config(
            asgi,
            host=bind_host,
            port=bind_port,
            log_level=log_level,
            # Not uvloop: it starts each Slurm command with fork() on the event loop's thread,
            # ~20 ms of a stalled loop per command once a big snapshot is held (asyncio's loop
            # uses Python's vfork-based subprocess: ~2 ms). tests/server/test_serve_loop.py
            loop="asyncio",
            # uvicorn's loggers keep no handlers of their own: their lines reach the root
            # logger's, in the configured format (server/logs.py).
            log_config=None,
            # The app logs one line per request itself, with its id, operation and round trips.
            access_log=False,
            timeout_keep_alive=keep_alive,
            # Client address and scheme from X-Forwarded-* sent by the hosts FORWARDED_ALLOW_IPS
            # names (uvicorn reads it; default 127.0.0.1, the container sets "*" behind its ALB).
            proxy_headers=True,
            forwarded_allow_ips=trusted,
            timeout_graceful_shutdown=10,
            # A WebSocket frame over the message cap is refused (1009) as it arrives, not
            # buffered whole first (server/message_limit.py holds the cap under other servers).
            ws_max_size=settings.max_message_bytes,
            # Past this many open connections, requests get 503 (uvicorn's own check).
            limit_concurrency=settings.max_connections,
            http=guarded_protocol(
                settings.header_timeout, settings.max_connections_per_address, trusted
            ),
        )

    metrics_app = app.state.metrics_app
    if metrics_app is None or settings.metrics_port is None:
        uvicorn.Server(config(app, host, port)).run()
        return
    # One server on two sockets, so one process, one lifespan and one signal handler serve
    # both; each request goes to the app of the port it came in on.
    routed = by_port(app, metrics_app, settings.metrics_port)
    main = config(routed, host, port)
    sockets = [
        main.bind_socket(),
        config(routed, metrics_host, settings.metrics_port).bind_socket(),
    ]
    uvicorn.Server(main).run(sockets=sockets)


if __name__ == "__main__":
    raise SystemExit(main())
