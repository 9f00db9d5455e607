"""Choose a transport backend from a URL, as broadcaster does: the scheme names the backend,
the query string holds its options, and a backend's library is imported only when used."""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from transport.base import Transport

Opener = Callable[[str], Transport]


def _open_local(url: str) -> Transport:
    from transport.local import DEFAULT_CONCURRENCY, DEFAULT_TIMEOUT, LocalTransport

    parts = urlsplit(url)
    if parts.netloc or parts.path not in ("", "/"):
        raise ValueError(f"local:// takes no host or path, got {url!r}")
    options = url_options(parts.query, {"timeout", "concurrency"})
    return LocalTransport(
        timeout=float(options.get("timeout", DEFAULT_TIMEOUT)),
        concurrency=int(options.get("concurrency", DEFAULT_CONCURRENCY)),
    )


def _open_ssm(url: str) -> Transport:
    # boto3 is imported only when an ssm:// cluster is configured.
    from transport.ssm import open_ssm

    return open_ssm(url)


_BACKENDS: dict[str, Opener] = {"local": _open_local, "ssm": _open_ssm}


def register_backend(scheme: str, opener: Opener) -> None:
    """Make `scheme://` URLs open with `opener` (used by backends that live elsewhere)."""
    _BACKENDS[scheme] = opener


def open_transport(url: str) -> Transport:
    """Open the transport a URL names, e.g. `local://` or `local://?timeout=10`."""
    scheme = urlsplit(url).scheme
    try:
        opener = _BACKENDS[scheme]
    except KeyError:
        known = ", ".join(f"{name}://" for name in sorted(_BACKENDS))
        raise ValueError(f"unknown transport {url!r}: expected one of {known}") from None
    return opener(url)


def url_options(query: str, allowed: set[str]) -> dict[str, str]:
    """A transport URL's query string as options; the last value wins, unknown names fail."""
    options = {key: values[-1] for key, values in parse_qs(query, strict_parsing=False).items()}
    unknown = set(options) - allowed
    if unknown:
        raise ValueError(f"unknown transport option(s): {', '.join(sorted(unknown))}")
    return options
