"""The authentication part of the settings: which mode, the token map (inline or from a file),
JWT and API Gateway claim settings, the Host allow-list, and the identity floor applied to every
name configuration gives. Read by Settings.from_environ; every problem is a SettingsError that
names the variable and never shows a token."""

from __future__ import annotations

import json
import os
import re
import stat
from collections.abc import Mapping

from resolvers.identity import InvalidUserName, validate_user_name
from server.auth import ASYMMETRIC, ClaimMapping, JwtSettings
from server.floor import floor_violation
from server.hosts import parse_allowed_hosts
from server.settings_error import SettingsError
from server.tokens import TokenMap, TokenMapError, parse_token_lines, parse_token_map

AUTH_MODES = ("none", "tokens", "jwt", "apigateway")


def above_floor(variable: str, user: str, min_uid: int) -> None:
    reason = floor_violation(user, min_uid)
    if reason is not None:
        raise SettingsError(f"{variable}: {reason}; the service never acts as such an account")


def _auth_mode(environ: Mapping[str, str]) -> str:
    """SLURM_GRAPHQL_AUTH, or what its absence means: tokens when a map is given, else none."""
    mode = environ.get("SLURM_GRAPHQL_AUTH", "").strip().lower()
    if mode not in ("", *AUTH_MODES):
        raise SettingsError(f"SLURM_GRAPHQL_AUTH: {mode!r} is not one of {', '.join(AUTH_MODES)}")
    return mode


def tokens_from(environ: Mapping[str, str]) -> TokenMap:
    """The token map from SLURM_GRAPHQL_TOKENS or SLURM_GRAPHQL_TOKENS_FILE (not both), which
    must be present exactly when the mode is `tokens` (or unset)."""
    inline = environ.get("SLURM_GRAPHQL_TOKENS", "")
    path = environ.get("SLURM_GRAPHQL_TOKENS_FILE", "")
    if inline.strip() and path:
        raise SettingsError(
            "SLURM_GRAPHQL_TOKENS and SLURM_GRAPHQL_TOKENS_FILE are both set; use one"
        )
    try:
        tokens = parse_token_lines(_read_secret_file(path)) if path else parse_token_map(inline)
    except TokenMapError as exc:
        raise SettingsError(str(exc)) from None
    mode = _auth_mode(environ)
    if mode == "tokens" and not tokens:
        raise SettingsError(
            "SLURM_GRAPHQL_AUTH=tokens: set SLURM_GRAPHQL_TOKENS or SLURM_GRAPHQL_TOKENS_FILE"
        )
    if mode not in ("", "tokens") and tokens:
        raise SettingsError(
            f"SLURM_GRAPHQL_AUTH={mode}: a token map is also set; remove it or use tokens"
        )
    return tokens


def _read_secret_file(path: str) -> str:
    """A token file's text. Like OpenSSH with private keys, refuse a file others may read or
    change: a service group may read it (0640), the world may not (0644 is refused)."""
    variable = "SLURM_GRAPHQL_TOKENS_FILE"
    try:
        with open(path, encoding="utf-8") as file:
            status = os.fstat(file.fileno())
            if not stat.S_ISREG(status.st_mode):
                raise SettingsError(f"{variable}: {path} is not a regular file")
            if status.st_mode & (stat.S_IRWXO | stat.S_IWGRP):
                raise SettingsError(
                    f"{variable}: {path} is readable or writable by others (mode "
                    f"{stat.S_IMODE(status.st_mode):04o}); chmod 600 (or 640 for a group)"
                )
            return file.read()
    except (OSError, UnicodeDecodeError) as exc:
        raise SettingsError(f"{variable}: cannot read {path}: {exc}") from None


def allowed_hosts_from(environ: Mapping[str, str]) -> tuple[str, ...]:
    try:
        return parse_allowed_hosts(environ.get("SLURM_GRAPHQL_ALLOWED_HOSTS", ""))
    except ValueError as exc:
        raise SettingsError(f"SLURM_GRAPHQL_ALLOWED_HOSTS: {exc}") from None


def _email_domains(environ: Mapping[str, str]) -> frozenset[str]:
    """SLURM_GRAPHQL_JWT_EMAIL_DOMAINS: comma-separated domains, matched case-insensitively."""
    raw = environ.get("SLURM_GRAPHQL_JWT_EMAIL_DOMAINS", "")
    domains = frozenset(d.strip().lower() for d in raw.split(",") if d.strip())
    for domain in domains:
        if not re.fullmatch(
            r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+", domain
        ):
            raise SettingsError(f"SLURM_GRAPHQL_JWT_EMAIL_DOMAINS: {domain[:60]!r} is not a domain")
    return domains


def apigateway_from(environ: Mapping[str, str]) -> ClaimMapping | None:
    if _auth_mode(environ) != "apigateway":
        return None
    return ClaimMapping(
        user_claim=environ.get("SLURM_GRAPHQL_JWT_USER_CLAIM") or "username",
        groups_claim=environ.get("SLURM_GRAPHQL_JWT_GROUPS_CLAIM") or "cognito:groups",
        admin_group=environ.get("SLURM_GRAPHQL_JWT_ADMIN_GROUP") or None,
        user_map=_user_map(environ.get("SLURM_GRAPHQL_USER_MAP")),
        email_domains=_email_domains(environ),
    )


def jwt_from(environ: Mapping[str, str]) -> JwtSettings | None:
    """JWT settings when SLURM_GRAPHQL_AUTH=jwt (`tokens` and `none` need none of them)."""
    if _auth_mode(environ) != "jwt":
        return None
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
    audience = environ.get("SLURM_GRAPHQL_JWT_AUDIENCE", "").strip()
    if not audience:
        # Without it, a token the issuer made for any other app (another client of the same
        # Cognito pool, with its own sign-up rules) would be accepted here.
        raise SettingsError(
            "SLURM_GRAPHQL_JWT_AUDIENCE: required with SLURM_GRAPHQL_AUTH=jwt (the app client id "
            "or audience your tokens are issued for)"
        )
    return JwtSettings(
        issuer=issuer,
        jwks_url=environ.get("SLURM_GRAPHQL_JWT_JWKS_URL")
        or issuer.rstrip("/") + "/.well-known/jwks.json",
        audience=audience,
        algorithms=algorithms,
        user_claim=environ.get("SLURM_GRAPHQL_JWT_USER_CLAIM") or "username",
        groups_claim=environ.get("SLURM_GRAPHQL_JWT_GROUPS_CLAIM") or "cognito:groups",
        admin_group=environ.get("SLURM_GRAPHQL_JWT_ADMIN_GROUP") or None,
        leeway_seconds=_leeway(environ.get("SLURM_GRAPHQL_JWT_LEEWAY", "")),
        user_map=_user_map(environ.get("SLURM_GRAPHQL_USER_MAP")),
        email_domains=_email_domains(environ),
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


def _leeway(raw: str) -> float:
    try:
        value = float(raw or 0)
    except ValueError:
        raise SettingsError(f"SLURM_GRAPHQL_JWT_LEEWAY: {raw!r} is not a number") from None
    if value < 0:
        raise SettingsError(f"SLURM_GRAPHQL_JWT_LEEWAY: must be at least 0, got {raw}")
    return value
