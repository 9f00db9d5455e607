"""Static tokens: read from SLURM_GRAPHQL_TOKENS or a private file, kept only as SHA-256 digests,
never shown by the settings, and unambiguous about which mode is on."""

from __future__ import annotations

import hashlib
from pathlib import Path

import httpx
import pytest

from server.app import create_app
from server.settings import Settings, SettingsError
from tests.support.counting import CountingTransport
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

VIEWER = "{ viewer { user admin authenticated } }"
SECRET = "s3cr3t-alice-token-0123456789"


def token_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "tokens"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_settings_never_show_a_token() -> None:
    """repr and str of the settings (what a crash dump or a debug log prints) hold no token,
    and what is kept is the token's SHA-256 digest, not the token."""
    settings = Settings.from_environ(
        {"SLURM_GRAPHQL_TOKENS": f"{SECRET}=alice,x-admin-tok=carol:admin"}
    )
    for shown in (repr(settings), str(settings), repr(settings.tokens)):
        assert SECRET not in shown and "x-admin-tok" not in shown
    assert "TokenMap(2 tokens)" in repr(settings)
    digests = {digest for digest, _ in settings.tokens.entries}
    assert hashlib.sha256(SECRET.encode()).digest() in digests
    assert all(SECRET.encode() not in digest for digest in digests)


async def test_a_token_file_authenticates(tmp_path: Path, unix_users: None) -> None:
    """SLURM_GRAPHQL_TOKENS_FILE: one entry a line, comments and blank lines allowed; tokens
    may hold `=` (base64); an unknown token still gets 401."""
    path = token_file(
        tmp_path,
        f"# who may use the API\n\n{SECRET}=alice\n  YWRtaW4tdG9rZW4==  =carol:admin\n",
        0o640,
    )
    settings = Settings.from_environ({"SLURM_GRAPHQL_TOKENS_FILE": str(path)})
    assert settings.auth_mode == "tokens"
    app = create_app(settings, transports={"local": CountingTransport(LocalTransport())})
    seen = []
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as client,
    ):
        for token in (SECRET, "YWRtaW4tdG9rZW4==", "alice-token"):
            response = await client.post(
                "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {token}"}
            )
            seen.append(response.status_code)
            if response.status_code == 200:
                seen.append(response.json()["data"]["viewer"])
    assert seen == [
        200,
        {"user": "alice", "admin": False, "authenticated": True},
        200,
        {"user": "carol", "admin": True, "authenticated": True},
        401,
    ]


@pytest.mark.parametrize("mode", [0o644, 0o604, 0o620, 0o666])
def test_a_token_file_others_may_read_or_change_is_refused(tmp_path: Path, mode: int) -> None:
    """Like OpenSSH with private keys: world-readable or group/world-writable stops start-up."""
    path = token_file(tmp_path, f"{SECRET}=alice\n", mode)
    with pytest.raises(SettingsError, match="chmod 600"):
        Settings.from_environ({"SLURM_GRAPHQL_TOKENS_FILE": str(path)})


def test_a_token_file_must_be_a_readable_regular_file(tmp_path: Path) -> None:
    """A directory or a missing path is an error naming the variable, never an empty map."""
    for path in (tmp_path, tmp_path / "missing"):
        with pytest.raises(SettingsError, match="SLURM_GRAPHQL_TOKENS_FILE"):
            Settings.from_environ({"SLURM_GRAPHQL_TOKENS_FILE": str(path)})


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"SLURM_GRAPHQL_TOKENS": "short=alice"}, "at least 8"),
        ({"SLURM_GRAPHQL_TOKENS": "has space tok=alice"}, "no spaces"),
        ({"SLURM_GRAPHQL_TOKENS": f"{SECRET}=alice,{SECRET}=bob"}, "repeats"),
        ({"SLURM_GRAPHQL_TOKENS": f"{SECRET}=Alice"}, "POSIX"),
        ({"SLURM_GRAPHQL_TOKENS": f"{SECRET}=alice\n"}, None),
        ({"SLURM_GRAPHQL_AUTH": "tokens"}, "SLURM_GRAPHQL_TOKENS_FILE"),
        ({"SLURM_GRAPHQL_AUTH": "none", "SLURM_GRAPHQL_TOKENS": f"{SECRET}=alice"}, "token map"),
        (
            {"SLURM_GRAPHQL_TOKENS": f"{SECRET}=alice", "SLURM_GRAPHQL_TOKENS_FILE": "/x"},
            "both set",
        ),
    ],
)
def test_token_settings_are_unambiguous(environ: dict[str, str], message: str | None) -> None:
    """Short, spaced, repeated or invalid entries, a mode without its map, a map the mode
    ignores, and two sources at once: each stops start-up, naming the problem not the token."""
    if message is None:
        assert Settings.from_environ(environ).auth_mode == "tokens"
        return
    with pytest.raises(SettingsError, match=message) as refused:
        Settings.from_environ(environ)
    assert SECRET not in str(refused.value)
