"""Choose a transport backend from a URL, as broadcaster does: the scheme names the backend,
the query string holds its options, and a backend's library is imported only when used."""

from __future__ import annotations

from typing import Protocol
from urllib.parse import urlsplit

from transport.base import DEFAULT_MIN_UID, Transport, url_options
from transport.environment import parse_pass_env


class Opener(Protocol):
    """Opens a backend for a URL; `min_uid` is the smallest UID its commands may run as."""

    def __call__(self, url: str, *, min_uid: int) -> Transport: ...


def _open_local(url: str, *, min_uid: int) -> Transport:
    from transport.local import (
        DEFAULT_CONCURRENCY,
        DEFAULT_SESSIONS,
        DEFAULT_TIMEOUT,
        LocalTransport,
    )

    parts = urlsplit(url)
    if parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"local:// takes no host or path, got {url!r}")
    options = url_options(parts.query, {"timeout", "concurrency", "sessions", "pass_env"})
    return LocalTransport(
        timeout=float(options.get("timeout", DEFAULT_TIMEOUT)),
        concurrency=int(options.get("concurrency", DEFAULT_CONCURRENCY)),
        pass_env=parse_pass_env(options.get("pass_env")),
        min_uid=min_uid,
        sessions=int(options.get("sessions", DEFAULT_SESSIONS)),
    )


def _open_ssm(url: str, *, min_uid: int) -> Transport:
    # boto3 is imported only when an ssm:// cluster is configured.
    from transport.ssm import open_ssm

    return open_ssm(url, min_uid=min_uid)


_BACKENDS: dict[str, Opener] = {"local": _open_local, "ssm": _open_ssm}


def register_backend(scheme: str, opener: Opener) -> None:
    """Make `scheme://` URLs open with `opener` (used by backends that live elsewhere)."""
    _BACKENDS[scheme] = opener


def open_transport(url: str, *, min_uid: int = DEFAULT_MIN_UID) -> Transport:
    """Open the transport a URL names, e.g. `local://` or `local://?timeout=10`. Its commands
    never run as root or as a user whose UID is below `min_uid` (Settings.min_uid)."""
    scheme = urlsplit(url).scheme
    try:
        opener = _BACKENDS[scheme]
    except KeyError:
        known = ", ".join(f"{name}://" for name in sorted(_BACKENDS))
        raise ValueError(f"unknown transport {url!r}: expected one of {known}") from None
    return opener(url, min_uid=min_uid)
