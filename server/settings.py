"""Settings, read once from the environment into a frozen object and passed explicitly."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

from strawberry.http.websocket_origin import normalize_allowed_origins

from resolvers.identity import Identity, InvalidUserName, validate_user_name
from server.auth import ASYMMETRIC, ClaimMapping, JwtSettings
from server.tokens import TokenMapError, parse_token_map

_CLUSTER_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")

DEFAULT_CLUSTERS = "local=local://"
LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


class SettingsError(ValueError):
    """A configuration value is wrong; the message names the variable and the fix."""


@dataclass(frozen=True)
class Settings:
    clusters: tuple[tuple[str, str], ...] = (("local", "local://"),)
    # Operations: request logs, metrics, and how long an answer keeps a cluster ready.
    log_format: str = "text"
    log_level: str = "info"
    metrics: bool = True
    ready_interval: float = 30.0
    cache_ttl: float = 1.0
    max_page_size: int = 10_000
    graphiql: bool = True
    response_cache: bool = True
    # Bearer token -> identity. Empty: every request acts as the server's own user.
    tokens: Mapping[str, Identity] = field(default_factory=dict)
    # The AWS CLI on the head node, which fetches scripts submitted by scriptS3Uri.
    aws_cli: str = "aws"
    # What one document may ask for (server/limits.py), checked before anything runs.
    max_depth: int = 15
    max_aliases: int = 30
    max_cost: int = 500_000
    max_tokens: int = 10_000
    # A cluster's size until its first snapshot tells it: the bound of lists in the cost.
    assumed_nodes: int = 1_000
    assumed_jobs: int = 10_000
    # Job output one request may read: how many reads, and how many bytes they ask for.
    max_output_reads: int = 20
    max_output_bytes: int = 4 * 1024 * 1024
    # The execution budget of one request (or subscription event): fields resolved, seconds.
    max_fields: int = 1_000_000
    max_seconds: float = 20.0
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
    # Browser pages on these origins may call the API (CORS) and open its WebSockets.
    cors_origins: tuple[str, ...] = ()
    ws_origins: tuple[str, ...] | None = None  # None: the CORS origins

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> Settings:
        return cls(
            clusters=parse_clusters(environ.get("SLURM_GRAPHQL_CLUSTERS") or DEFAULT_CLUSTERS),
            log_format=_choice(environ, "SLURM_GRAPHQL_LOG_FORMAT", "text", LOG_FORMATS),
            log_level=_choice(environ, "SLURM_GRAPHQL_LOG_LEVEL", "info", LOG_LEVELS),
            metrics=_flag(environ, "SLURM_GRAPHQL_METRICS", True),
            ready_interval=_number(environ, "SLURM_GRAPHQL_READY_INTERVAL", 30.0, minimum=1.0),
            cache_ttl=_number(environ, "SLURM_GRAPHQL_CACHE_TTL", 1.0, minimum=0.0),
            max_page_size=int(_number(environ, "SLURM_GRAPHQL_MAX_PAGE_SIZE", 10_000, minimum=1)),
            graphiql=_flag(environ, "SLURM_GRAPHQL_GRAPHIQL", True),
            response_cache=_flag(environ, "SLURM_GRAPHQL_RESPONSE_CACHE", True),
            tokens=_tokens(environ.get("SLURM_GRAPHQL_TOKENS", "")),
            aws_cli=environ.get("SLURM_GRAPHQL_AWS_CLI") or "aws",
            max_depth=int(_number(environ, "SLURM_GRAPHQL_MAX_DEPTH", 15, minimum=1)),
            max_aliases=int(_number(environ, "SLURM_GRAPHQL_MAX_ALIASES", 30, minimum=0)),
            max_cost=int(_number(environ, "SLURM_GRAPHQL_MAX_COST", 500_000, minimum=1)),
            max_tokens=int(_number(environ, "SLURM_GRAPHQL_MAX_TOKENS", 10_000, minimum=1)),
            assumed_nodes=int(_number(environ, "SLURM_GRAPHQL_ASSUMED_NODES", 1_000, minimum=1)),
            assumed_jobs=int(_number(environ, "SLURM_GRAPHQL_ASSUMED_JOBS", 10_000, minimum=1)),
            max_output_reads=int(_number(environ, "SLURM_GRAPHQL_MAX_OUTPUT_READS", 20, minimum=0)),
            max_output_bytes=int(
                _number(environ, "SLURM_GRAPHQL_MAX_OUTPUT_BYTES", 4 * 1024 * 1024, minimum=0)
            ),
            max_fields=int(_number(environ, "SLURM_GRAPHQL_MAX_FIELDS", 1_000_000, minimum=1)),
            max_seconds=_number(environ, "SLURM_GRAPHQL_MAX_SECONDS", 20.0, minimum=0.1),
            introspection=_flag(environ, "SLURM_GRAPHQL_INTROSPECTION", True),
            jwt=_jwt(environ),
            apigateway=_apigateway(environ),
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
            cors_origins=_origins(environ, "SLURM_GRAPHQL_CORS_ORIGINS") or (),
            ws_origins=_origins(environ, "SLURM_GRAPHQL_WS_ORIGINS"),
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


def _tokens(value: str) -> Mapping[str, Identity]:
    try:
        return parse_token_map(value)
    except TokenMapError as exc:
        raise SettingsError(str(exc)) from None


AUTH_MODES = ("none", "tokens", "jwt", "apigateway")


def _apigateway(environ: Mapping[str, str]) -> ClaimMapping | None:
    if environ.get("SLURM_GRAPHQL_AUTH", "").strip().lower() != "apigateway":
        return None
    return ClaimMapping(
        user_claim=environ.get("SLURM_GRAPHQL_JWT_USER_CLAIM") or "username",
        groups_claim=environ.get("SLURM_GRAPHQL_JWT_GROUPS_CLAIM") or "cognito:groups",
        admin_group=environ.get("SLURM_GRAPHQL_JWT_ADMIN_GROUP") or None,
        user_map=_user_map(environ.get("SLURM_GRAPHQL_USER_MAP")),
    )


def _jwt(environ: Mapping[str, str]) -> JwtSettings | None:
    """JWT settings when SLURM_GRAPHQL_AUTH=jwt (`tokens` and `none` need none of them)."""
    mode = environ.get("SLURM_GRAPHQL_AUTH", "").strip().lower()
    if mode in ("", "none", "tokens", "apigateway"):
        return None
    if mode not in AUTH_MODES:
        raise SettingsError(f"SLURM_GRAPHQL_AUTH: {mode!r} is not one of {', '.join(AUTH_MODES)}")
    issuer = environ.get("SLURM_GRAPHQL_JWT_ISSUER", "").strip()
    if not issuer.startswith("https://") and not issuer.startswith("http://127."):
        raise SettingsError("SLURM_GRAPHQL_JWT_ISSUER: an https:// issuer URL is required")
    algorithms = tuple(
        a.strip() for a in environ.get("SLURM_GRAPHQL_JWT_ALGORITHMS", "RS256,ES256").split(",")
    )
    if not algorithms or not set(algorithms) <= ASYMMETRIC:
        raise SettingsError(
            "SLURM_GRAPHQL_JWT_ALGORITHMS: only asymmetric algorithms "
            f"({', '.join(sorted(ASYMMETRIC))}) are allowed"
        )
    return JwtSettings(
        issuer=issuer,
        jwks_url=environ.get("SLURM_GRAPHQL_JWT_JWKS_URL")
        or issuer.rstrip("/") + "/.well-known/jwks.json",
        audience=environ.get("SLURM_GRAPHQL_JWT_AUDIENCE") or None,
        algorithms=algorithms,
        user_claim=environ.get("SLURM_GRAPHQL_JWT_USER_CLAIM") or "username",
        groups_claim=environ.get("SLURM_GRAPHQL_JWT_GROUPS_CLAIM") or "cognito:groups",
        admin_group=environ.get("SLURM_GRAPHQL_JWT_ADMIN_GROUP") or None,
        leeway_seconds=_number(environ, "SLURM_GRAPHQL_JWT_LEEWAY", 0.0, minimum=0.0),
        user_map=_user_map(environ.get("SLURM_GRAPHQL_USER_MAP")),
    )


def _user_map(path: str | None) -> Mapping[str, str]:
    """SLURM_GRAPHQL_USER_MAP: a JSON file mapping claim values to POSIX users, for identities
    whose claim is not their Unix name (`{"alice@example.org": "asmith"}`)."""
    if not path:
        return {}
    try:
        with open(path, encoding="utf-8") as file:
            loaded = json.load(file)
    except (OSError, ValueError) as exc:
        raise SettingsError(f"SLURM_GRAPHQL_USER_MAP: cannot read {path}: {exc}") from None
    if not isinstance(loaded, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in loaded.items()
    ):
        raise SettingsError("SLURM_GRAPHQL_USER_MAP: expected a JSON object of strings")
    for user in loaded.values():
        try:
            validate_user_name(user)
        except InvalidUserName as exc:
            raise SettingsError(f"SLURM_GRAPHQL_USER_MAP: {exc}") from None
    return dict(loaded)
