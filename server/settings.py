"""Settings, read once from the environment into a frozen object and passed explicitly."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from strawberry.http.websocket_origin import normalize_allowed_origins

from resolvers.identity import InvalidUserName, validate_user_name
from server.auth import ClaimMapping, JwtSettings
from server.auth_settings import (
    above_floor,
    allowed_hosts_from,
    apigateway_from,
    jwt_from,
    tokens_from,
)
from server.floor import DEFAULT_MIN_UID
from server.settings_error import SettingsError as SettingsError  # re-exported: its old home
from server.tokens import TokenMap

_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")

DEFAULT_CLUSTERS = "local=local://"
DEFAULT_MAX_DOCUMENT_BYTES = 128 * 1024
DEFAULT_CACHE_BYTES = 32 * 1024 * 1024
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class Settings:
    clusters: tuple[tuple[str, str], ...] = (("local", "local://"),)
    # Operations: request logs, metrics, and how long an answer keeps a cluster ready.
    log_format: str = "text"
    log_level: str = "info"
    metrics: bool = True
    ready_interval: float = 5.0
    cache_ttl: float = 1.0
    max_page_size: int = 10_000
    max_history_days: int = 31
    # How long a jobHistory window listing serves its requester's next first or counted pages
    # (resolvers/history_listings.py); 0: every such page lists the window again.
    history_listing_ttl: float = 10.0
    graphiql: bool = True
    # The reference dashboard at /ui (server/ui.py); off unless asked for. With JWT, the OIDC
    # client id its sign-in button uses (authorization code + PKCE at the JWT issuer).
    ui: bool = False
    ui_oidc_client_id: str | None = None
    response_cache: bool = True
    # Persisted queries (server/persisted.py): a manifest of allowed documents, and whether
    # only they run.
    persisted_manifest: str | None = None
    persisted_only: bool = False
    # Bearer token digests -> identity (SLURM_GRAPHQL_TOKENS or _TOKENS_FILE).
    tokens: TokenMap = field(default_factory=TokenMap)
    # With no authentication configured, every request is anonymous: it may only read, as this
    # unprivileged account.
    anonymous_user: str = "nobody"
    # The identity floor (server/floor.py): never act as root or an account below this UID.
    min_uid: int = DEFAULT_MIN_UID
    # Host header values accepted besides loopback names in anonymous mode (DNS rebinding);
    # when set, checked in every mode.
    allowed_hosts: tuple[str, ...] = ()
    # The AWS CLI on the head node, which fetches scripts submitted by scriptS3Uri.
    aws_cli: str = "aws"
    # What one document may ask for (server/limits.py), checked before anything runs.
    max_depth: int = 15
    max_aliases: int = 30
    max_cost: int = 500_000
    max_tokens: int = 10_000
    # Hard caps checked before parsing (server/documents.py, server/message_limit.py), and the
    # memory parsed documents may hold.
    max_document_bytes: int = DEFAULT_MAX_DOCUMENT_BYTES
    max_message_bytes: int = 1024 * 1024  # one WebSocket message
    document_cache_bytes: int = DEFAULT_CACHE_BYTES
    # A cluster's size until its first snapshot tells it: the bound of lists in the cost.
    assumed_nodes: int = 1_000
    assumed_jobs: int = 10_000
    # Job output one request may read: how many reads, and how many bytes they ask for.
    max_output_reads: int = 20
    max_output_bytes: int = 4 * 1024 * 1024
    # The execution budget of one request (or subscription event): fields resolved, seconds.
    max_fields: int = 1_000_000
    max_seconds: float = 20.0
    # False runs graphql-core's own execution instead of server/execution.py's shortcuts (same
    # results, slower listings): the way out if a graphql-core release breaks the shortcuts.
    fast_execution: bool = True
    introspection: bool = True
    # Whose jobs a user sees: "all" (Slurm's default) or "own" (like PrivateData=jobs).
    job_visibility: str = "all"
    admins_read_output: bool = False
    # SLURM_GRAPHQL_AUTH=jwt: OIDC bearer tokens checked against the issuer's keys.
    jwt: JwtSettings | None = None
    # SLURM_GRAPHQL_AUTH=apigateway: claims API Gateway's authorizer put in the Lambda event.
    apigateway: ClaimMapping | None = None
    poll_interval: float = 2.0
    max_subscriptions_per_connection: int = 100
    subscriber_queue: int = 256
    # Abuse limits (server/body_limit.py, server/rate_limit.py), checked before any command.
    max_body_bytes: int = 1024 * 1024
    rate_limit: float = 0.0  # requests a second per identity; 0: no limit
    rate_burst: int = 0  # 0: the rate rounded up (at least 1)
    # Failed authentications a client address may make in a minute before it is blocked for
    # the rest of that minute (server/auth_failures.py).
    auth_failures_per_minute: int = 10
    # Browser pages on these origins may call the API (CORS) and open its WebSockets.
    cors_origins: tuple[str, ...] = ()
    ws_origins: tuple[str, ...] | None = None  # None: the CORS origins
    # Limits on every channel (server/channel_limits.py, server/slow_clients.py, server/metrics.py).
    max_subscriptions_per_user: int = 100  # streams at once per client, across its connections
    max_websockets_per_client: int = 50  # WebSocket connections per address and per identity
    header_timeout: float = 10.0  # seconds for a request's head to arrive (serve)
    body_timeout: float = 30.0  # seconds for a request's body to arrive
    max_connections: int = 1000  # open connections a `serve` process accepts (503 past it)
    max_connections_per_address: int = 100  # of those, from one peer address (serve)
    metrics_token: str | None = None  # /metrics needs `Authorization: Bearer <token>`
    metrics_port: int | None = None  # /metrics on its own port (serve), not on the API's
    metrics_max_operations: int = 100  # distinct operation labels before "other"
    # Shared state across replicas (server/shared_state.py): redis:// or rediss:// (TLS); None:
    # everything stays in this process, as with one replica.
    redis_url: str | None = field(default=None, repr=False)  # may hold a password

    def __post_init__(self) -> None:
        """Refuses, whatever built the settings, an authentication setup that is ambiguous or
        would act as an account below the identity floor."""
        configured = [
            mode
            for mode, on in (
                ("apigateway", self.apigateway is not None),
                ("jwt", self.jwt is not None),
                ("tokens", len(self.tokens) > 0),
            )
            if on
        ]
        if len(configured) > 1:
            raise SettingsError(
                f"SLURM_GRAPHQL_AUTH: {' and '.join(configured)} are both configured; choose one"
            )
        try:
            validate_user_name(self.anonymous_user)
        except InvalidUserName as exc:
            raise SettingsError(f"SLURM_GRAPHQL_ANONYMOUS_USER: {exc}") from None
        above_floor("SLURM_GRAPHQL_ANONYMOUS_USER", self.anonymous_user, self.min_uid)
        source = "SLURM_GRAPHQL_TOKENS"
        for identity in self.tokens.identities():
            above_floor(source, identity.user, self.min_uid)
        for claims in (self.jwt, self.apigateway):
            if claims is None:
                continue
            for user in claims.user_map.values():
                above_floor("SLURM_GRAPHQL_USER_MAP", user, self.min_uid)
            if claims.user_claim == "email" and not claims.email_domains:
                raise SettingsError(
                    "SLURM_GRAPHQL_JWT_EMAIL_DOMAINS: required when the user claim is email "
                    "(the domains whose addresses are this cluster's users, e.g. example.org)"
                )

    @property
    def auth_mode(self) -> str:
        """`none` (anonymous, read-only), `tokens`, `jwt` or `apigateway`."""
        if self.apigateway is not None:
            return "apigateway"
        if self.jwt is not None:
            return "jwt"
        return "tokens" if len(self.tokens) > 0 else "none"

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            clusters=parse_clusters(environ.get("SLURM_GRAPHQL_CLUSTERS") or DEFAULT_CLUSTERS),
            log_format=_choice(environ, "SLURM_GRAPHQL_LOG_FORMAT", "text", LOG_FORMATS),
            log_level=_choice(environ, "SLURM_GRAPHQL_LOG_LEVEL", "info", LOG_LEVELS),
            metrics=_flag(environ, "SLURM_GRAPHQL_METRICS", True),
            ready_interval=_number(environ, "SLURM_GRAPHQL_READY_INTERVAL", 5.0, minimum=1.0),
            cache_ttl=_number(environ, "SLURM_GRAPHQL_CACHE_TTL", 1.0, minimum=0.0),
            max_page_size=int(_number(environ, "SLURM_GRAPHQL_MAX_PAGE_SIZE", 10_000, minimum=1)),
            max_history_days=int(_number(environ, "SLURM_GRAPHQL_MAX_HISTORY_DAYS", 31, minimum=1)),
            history_listing_ttl=_number(
                environ, "SLURM_GRAPHQL_HISTORY_LISTING_TTL", 10.0, minimum=0.0
            ),
            graphiql=_flag(environ, "SLURM_GRAPHQL_GRAPHIQL", True),
            ui=_flag(environ, "SLURM_GRAPHQL_UI", False),
            ui_oidc_client_id=environ.get("SLURM_GRAPHQL_UI_OIDC_CLIENT_ID") or None,
            response_cache=_flag(environ, "SLURM_GRAPHQL_RESPONSE_CACHE", True),
            persisted_manifest=environ.get("SLURM_GRAPHQL_PERSISTED_MANIFEST") or None,
            persisted_only=_flag(environ, "SLURM_GRAPHQL_PERSISTED_ONLY", False),
            tokens=tokens_from(environ),
            anonymous_user=environ.get("SLURM_GRAPHQL_ANONYMOUS_USER") or "nobody",
            min_uid=int(_number(environ, "SLURM_GRAPHQL_MIN_UID", DEFAULT_MIN_UID, minimum=1)),
            allowed_hosts=allowed_hosts_from(environ),
            aws_cli=environ.get("SLURM_GRAPHQL_AWS_CLI") or "aws",
            max_depth=int(_number(environ, "SLURM_GRAPHQL_MAX_DEPTH", 15, minimum=1)),
            max_aliases=int(_number(environ, "SLURM_GRAPHQL_MAX_ALIASES", 30, minimum=0)),
            max_cost=int(_number(environ, "SLURM_GRAPHQL_MAX_COST", 500_000, minimum=1)),
            max_tokens=int(_number(environ, "SLURM_GRAPHQL_MAX_TOKENS", 10_000, minimum=1)),
            max_document_bytes=_count(
                environ, "SLURM_GRAPHQL_MAX_DOCUMENT_BYTES", DEFAULT_MAX_DOCUMENT_BYTES
            ),
            max_message_bytes=_count(environ, "SLURM_GRAPHQL_MAX_MESSAGE_BYTES", 1024 * 1024),
            document_cache_bytes=int(
                _number(
                    environ, "SLURM_GRAPHQL_DOCUMENT_CACHE_BYTES", DEFAULT_CACHE_BYTES, minimum=0
                )
            ),
            assumed_nodes=int(_number(environ, "SLURM_GRAPHQL_ASSUMED_NODES", 1_000, minimum=1)),
            assumed_jobs=int(_number(environ, "SLURM_GRAPHQL_ASSUMED_JOBS", 10_000, minimum=1)),
            max_output_reads=int(_number(environ, "SLURM_GRAPHQL_MAX_OUTPUT_READS", 20, minimum=0)),
            max_output_bytes=int(
                _number(environ, "SLURM_GRAPHQL_MAX_OUTPUT_BYTES", 4 * 1024 * 1024, minimum=0)
            ),
            max_fields=int(_number(environ, "SLURM_GRAPHQL_MAX_FIELDS", 1_000_000, minimum=1)),
            max_seconds=_number(environ, "SLURM_GRAPHQL_MAX_SECONDS", 20.0, minimum=0.1),
            introspection=_flag(environ, "SLURM_GRAPHQL_INTROSPECTION", True),
            fast_execution=_flag(environ, "SLURM_GRAPHQL_FAST_EXECUTION", True),
            jwt=jwt_from(environ),
            apigateway=apigateway_from(environ),
            job_visibility=_choice(environ, "SLURM_GRAPHQL_JOB_VISIBILITY", "all", ("all", "own")),
            admins_read_output=_flag(environ, "SLURM_GRAPHQL_ADMINS_READ_OUTPUT", False),
            poll_interval=_number(environ, "SLURM_GRAPHQL_POLL_INTERVAL", 2.0, minimum=0.05),
            max_subscriptions_per_connection=int(
                _number(environ, "SLURM_GRAPHQL_MAX_SUBSCRIPTIONS", 100, minimum=1)
            ),
            subscriber_queue=int(
                _number(environ, "SLURM_GRAPHQL_SUBSCRIBER_QUEUE", 256, minimum=1)
            ),
            max_body_bytes=int(
                _number(environ, "SLURM_GRAPHQL_MAX_BODY_BYTES", 1024 * 1024, minimum=1)
            ),
            rate_limit=_number(environ, "SLURM_GRAPHQL_RATE_LIMIT", 0.0, minimum=0.0),
            rate_burst=int(_number(environ, "SLURM_GRAPHQL_RATE_BURST", 0, minimum=0)),
            auth_failures_per_minute=_count(environ, "SLURM_GRAPHQL_AUTH_FAILURES_PER_MINUTE", 10),
            cors_origins=_origins(environ, "SLURM_GRAPHQL_CORS_ORIGINS") or (),
            ws_origins=_origins(environ, "SLURM_GRAPHQL_WS_ORIGINS"),
            max_subscriptions_per_user=_count(
                environ, "SLURM_GRAPHQL_MAX_SUBSCRIPTIONS_PER_USER", 100
            ),
            max_websockets_per_client=_count(
                environ, "SLURM_GRAPHQL_MAX_WEBSOCKETS_PER_CLIENT", 50
            ),
            header_timeout=_number(environ, "SLURM_GRAPHQL_HEADER_TIMEOUT", 10.0, minimum=0.1),
            body_timeout=_number(environ, "SLURM_GRAPHQL_BODY_TIMEOUT", 30.0, minimum=0.1),
            max_connections=_count(environ, "SLURM_GRAPHQL_MAX_CONNECTIONS", 1000),
            max_connections_per_address=_count(
                environ, "SLURM_GRAPHQL_MAX_CONNECTIONS_PER_ADDRESS", 100
            ),
            metrics_token=environ.get("SLURM_GRAPHQL_METRICS_TOKEN") or None,
            metrics_port=_port(environ, "SLURM_GRAPHQL_METRICS_PORT"),
            metrics_max_operations=_count(environ, "SLURM_GRAPHQL_METRICS_MAX_OPERATIONS", 100),
            redis_url=redis_url_from(environ.get("SLURM_GRAPHQL_REDIS_URL", "")),
        )


def parse_clusters(value: str) -> tuple[tuple[str, str], ...]:
    """`name=url,name=url` into ordered pairs; the first is the default cluster."""
    pairs: list[tuple[str, str]] = []
    for item in value.split(","):
        name, sep, url = item.strip().partition("=")
        if not sep or not _CLUSTER_NAME.match(name) or "://" not in url:
            raise SettingsError(
                f"SLURM_GRAPHQL_CLUSTERS: {item.strip()!r} is not name=url (e.g. local=local://)"
            )
        if any(existing == name for existing, _ in pairs):
            raise SettingsError(f"SLURM_GRAPHQL_CLUSTERS: cluster {name!r} is listed twice")
        pairs.append((name, url))
    return tuple(pairs)


def redis_url_from(raw: str) -> str | None:
    """`redis://[user:password@]host[:port][/db]` or `rediss://…` (TLS, as ElastiCache and
    Valkey serve it); None when empty. The error never repeats the URL: it may hold a password."""
    raw = raw.strip()
    if raw == "":
        return None
    name = "SLURM_GRAPHQL_REDIS_URL"
    try:
        url = urlsplit(raw)
        port = url.port
    except ValueError:
        raise SettingsError(
            f"{name}: not a URL (redis://host:port or rediss://host:port)"
        ) from None
    if url.scheme not in ("redis", "rediss"):
        raise SettingsError(f"{name}: the scheme must be redis:// or rediss:// (TLS)")
    if not url.hostname:
        raise SettingsError(f"{name}: no host (redis://host:port or rediss://host:port)")
    if port == 0:
        raise SettingsError(f"{name}: port 0 is not a TCP port")
    database = url.path.strip("/")
    if database and not (database.isascii() and database.isdigit()):
        raise SettingsError(f"{name}: the path must be a database number (/0)")
    return raw


def _choice(environ: Mapping[str, str], name: str, default: str, choices: tuple[str, ...]) -> str:
    raw = environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw not in choices:
        raise SettingsError(f"{name}: {raw!r} is not one of {', '.join(choices)}")
    return raw


def _number(environ: Mapping[str, str], name: str, default: float, minimum: float) -> float:
    raw = environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a number") from None
    if value < minimum:
        raise SettingsError(f"{name}: must be at least {minimum:g}, got {raw}")
    return value


def _count(environ: Mapping[str, str], name: str, default: int) -> int:
    """A whole number of at least 1."""
    value = _number(environ, name, default, minimum=1)
    if value != int(value):
        raise SettingsError(f"{name}: {environ[name]!r} is not a whole number")
    return int(value)


def _port(environ: Mapping[str, str], name: str) -> int | None:
    raw = environ.get(name, "").strip()
    if raw == "":
        return None
    if not re.fullmatch(r"[0-9]{1,5}", raw) or not 0 < int(raw) < 65536:
        raise SettingsError(f"{name}: {raw!r} is not a TCP port (1-65535)")
    return int(raw)


def _origins(environ: Mapping[str, str], name: str) -> tuple[str, ...] | None:
    """Comma-separated origins (`https://host[:port]`, or `*`); None when unset."""
    raw = environ.get(name)
    if raw is None or raw.strip() == "":
        return None
    origins = tuple(item.strip() for item in raw.split(",") if item.strip())
    try:
        normalize_allowed_origins(origins)
    except ValueError as exc:
        raise SettingsError(f"{name}: {exc}") from None
    return origins


def _flag(environ: Mapping[str, str], name: str, default: bool) -> bool:
    raw = environ.get(name, "").strip().lower()
    if raw == "":
        return default
    if raw in ("1", "true", "yes", "on"):
        return True
    if raw in ("0", "false", "no", "off"):
        return False
    raise SettingsError(f"{name}: {raw!r} is not a boolean (use true or false)")
