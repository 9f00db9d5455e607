"""`slurm-graphql serve` without authentication binds to loopback only."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from server.cli import is_loopback


@pytest.mark.parametrize(
    ("host", "loopback"),
    [
        ("127.0.0.1", True),
        ("127.8.9.1", True),
        ("::1", True),
        ("localhost", True),
        ("0.0.0.0", False),
        ("10.0.0.5", False),
        ("::", False),
        ("example.org", False),
    ],
)
def test_loopback_addresses(host: str, loopback: bool) -> None:
    """Loopback is 127.0.0.0/8, ::1 and localhost; anything else may reach other hosts."""
    assert is_loopback(host) is loopback


def test_serve_refuses_a_public_address_without_authentication() -> None:
    """With no token map and no JWT settings, binding 0.0.0.0 stops at start-up with exit 2."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_GRAPHQL_")}
    result = subprocess.run(
        [sys.executable, "-m", "server.cli", "serve", "--host", "0.0.0.0", "--port", "1"],
        env=environ,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "without authentication" in result.stderr
