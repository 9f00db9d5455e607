"""The identity floor: the service never acts as root or as an account with a UID below
SLURM_GRAPHQL_MIN_UID, whatever a token map, a user map, a JWT or API Gateway's authorizer says.
Static names stop start-up; claims are refused at request time (PERMISSION_DENIED, audited with
the claimed name) before any command runs, over local:// and ssm://, HTTP and WebSocket."""

from __future__ import annotations

import asyncio
import json
import pwd
import subprocess
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import websockets

from server.app import create_app
from server.auth import identity_from_claims
from server.floor import IdentityRefused, floor_violation
from server.settings import Settings, SettingsError
from server.tokens import parse_token_map
from tests.conftest import open_inner_transport
from tests.support.app import app_client
from tests.support.audit import audit_lines
from tests.support.counting import CountingTransport
from tests.support.oidc import Issuer, oidc_issuer
from tests.support.ws import TRANSPORT_WS, serving
from transport.local import LocalTransport

pytestmark = pytest.mark.cluster

VIEWER = "{ viewer { user admin authenticated } }"
SUBMIT = (
    'mutation($n: String!) { submitJob(input: {script: "#!/bin/sh\\ntrue\\n", name: $n, '
    "hold: true}) { __typename ... on JobSubmitted { job { jobId user } } } }"
)
# Names the floor refuses on this machine: root and slurm (Slurm's operator account, UID 64030 on
# Debian) by name, the others by their passwd UID (< 1000).
BELOW_FLOOR = ("root", "slurm", "daemon", "bin")


@pytest.fixture(scope="module")
def issuer() -> Iterator[Issuer]:
    with oidc_issuer() as made:
        yield made


@pytest.mark.parametrize("user", BELOW_FLOOR)
@pytest.mark.parametrize("role", ["", ":admin"])
def test_a_token_map_naming_root_or_a_system_account_stops_start_up(
    user: str, role: str, tmp_path: Path
) -> None:
    """From SLURM_GRAPHQL_TOKENS, from a token file, or built in code: SettingsError."""
    entry = f"long-enough-token={user}{role}"
    with pytest.raises(SettingsError, match="never acts"):
        Settings.from_environ({"SLURM_GRAPHQL_TOKENS": f"alice-token=alice,{entry}"})
    path = tmp_path / "tokens"
    path.write_text(f"# team\nalice-token=alice\n{entry}\n")
    path.chmod(0o600)
    with pytest.raises(SettingsError, match="never acts"):
        Settings.from_environ({"SLURM_GRAPHQL_TOKENS_FILE": str(path)})
    with pytest.raises(SettingsError, match="never acts"):
        Settings(tokens=parse_token_map(entry))


@pytest.mark.parametrize("user", BELOW_FLOOR)
def test_the_anonymous_user_and_the_user_map_must_be_above_the_floor(
    user: str, tmp_path: Path, issuer: Issuer
) -> None:
    """SLURM_GRAPHQL_ANONYMOUS_USER and SLURM_GRAPHQL_USER_MAP values are static names too."""
    with pytest.raises(SettingsError, match="ANONYMOUS_USER"):
        Settings.from_environ({"SLURM_GRAPHQL_ANONYMOUS_USER": user})
    users = tmp_path / "users.json"
    users.write_text(json.dumps({"ops@example.org": user}))
    with pytest.raises(SettingsError, match="USER_MAP"):
        Settings.from_environ(issuer.environ(SLURM_GRAPHQL_USER_MAP=str(users)))


def test_the_floor_is_configurable_and_nobody_is_above_it(unix_users: None) -> None:
    """SLURM_GRAPHQL_MIN_UID raises the floor: a floor just above one test user's UID refuses
    that user and keeps the other (UIDs are read from the system, since the order in which a
    machine created alice and bob is its own); nobody (65534) is the default anonymous account;
    a floor of 0 is not a setting."""
    assert Settings.from_environ({}).anonymous_user == "nobody"
    lower, higher = sorted(("alice", "bob"), key=lambda user: pwd.getpwnam(user).pw_uid)
    floor = pwd.getpwnam(higher).pw_uid
    raised = {"SLURM_GRAPHQL_MIN_UID": str(floor)}
    with pytest.raises(SettingsError, match=lower):
        Settings.from_environ({**raised, "SLURM_GRAPHQL_TOKENS": f"token-of-{lower}={lower}"})
    kept = Settings.from_environ({**raised, "SLURM_GRAPHQL_TOKENS": f"token-of-{higher}={higher}"})
    assert kept.min_uid == floor
    with pytest.raises(SettingsError, match="MIN_UID"):
        Settings.from_environ({"SLURM_GRAPHQL_MIN_UID": "0"})


def jobs_named(name: str) -> list[str]:
    done = subprocess.run(
        ["squeue", "--noheader", "--all", "--name", name, "--format", "%i"],
        capture_output=True,
        text=True,
        check=True,
        timeout=30,
    )
    return done.stdout.split()


@pytest.fixture(params=["local", "ssm"])
async def jwt_api(
    request: pytest.FixtureRequest, issuer: Issuer, unix_users: None
) -> AsyncIterator[tuple[httpx.AsyncClient, CountingTransport]]:
    """SLURM_GRAPHQL_AUTH=jwt against the loopback issuer, over each transport."""
    inner = open_inner_transport(request, request.param)
    transport = CountingTransport(inner)
    settings = Settings.from_environ(
        issuer.environ(SLURM_GRAPHQL_JWT_USER_CLAIM="username", SLURM_GRAPHQL_CACHE_TTL="0")
    )
    try:
        async with app_client(settings, {"local": transport}) as client:
            yield client, transport
    finally:
        await inner.aclose()


@pytest.mark.parametrize("claimed", BELOW_FLOOR)
async def test_a_jwt_naming_root_or_a_system_account_is_refused_and_audited(
    claimed: str, issuer: Issuer, jwt_api: tuple[httpx.AsyncClient, CountingTransport]
) -> None:
    """A validly signed token whose user claim is below the floor (even in the admin group)
    gets 403 PERMISSION_DENIED for a query and for a submit: no command runs, no job appears,
    and the audit log names the claimed user."""
    client, transport = jwt_api
    token = issuer.token(username=claimed, **{"cognito:groups": ["hpc-admins"]})
    name = f"floor-{uuid.uuid4().hex[:10]}"
    with audit_lines() as lines:
        for query, variables in ((VIEWER, {}), (SUBMIT, {"n": name})):
            response = await client.post(
                "/graphql",
                json={"query": query, "variables": variables},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 403
            [error] = response.json()["errors"]
            assert error["extensions"]["code"] == "PERMISSION_DENIED"
            assert claimed not in error["message"]  # why is for the audit log only
    assert transport.calls == 0
    assert jobs_named(name) == []
    assert [(line["identity"], line["outcome"]) for line in lines] == [
        (claimed, "PERMISSION_DENIED")
    ] * 2
    # The same issuer's token for alice works: the refusal is about the claimed account.
    alice = issuer.token(username="alice")
    response = await client.post(
        "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {alice}"}
    )
    assert response.json()["data"]["viewer"] == {
        "user": "alice",
        "admin": False,
        "authenticated": True,
    }


async def test_a_websocket_whose_jwt_names_root_is_closed_4403_and_audited(
    issuer: Issuer, unix_users: None
) -> None:
    """In connection_init or in the upgrade's own Authorization header, a root claim never gets
    a connection_ack; the refusal is audited."""
    settings = Settings.from_environ(issuer.environ(SLURM_GRAPHQL_JWT_USER_CLAIM="username"))
    token = issuer.token(username="root")
    with audit_lines() as lines:
        async with serving(create_app(settings)) as url:
            socket_url = url.replace("http://", "ws://") + "/graphql"
            async with websockets.connect(socket_url, subprotocols=[TRANSPORT_WS]) as socket:  # type: ignore[list-item]
                init = {"Authorization": f"Bearer {token}"}
                await socket.send(json.dumps({"type": "connection_init", "payload": init}))
                with pytest.raises(websockets.ConnectionClosed) as closed:
                    await asyncio.wait_for(socket.recv(), 10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
            with pytest.raises(websockets.InvalidStatus) as refused:
                async with websockets.connect(
                    socket_url,
                    subprotocols=[TRANSPORT_WS],  # type: ignore[list-item]
                    additional_headers={"Authorization": f"Bearer {token}"},
                ):
                    pass
            assert refused.value.response.status_code == 403
    assert [(line["identity"], line["outcome"]) for line in lines] == [
        ("root", "PERMISSION_DENIED")
    ] * 2


EMAIL = {"SLURM_GRAPHQL_JWT_USER_CLAIM": "email", "SLURM_GRAPHQL_JWT_EMAIL_DOMAINS": "Example.org"}


@pytest.mark.parametrize(
    ("email", "expected"),
    [
        ("alice@example.org", "alice"),
        ("bob@EXAMPLE.ORG", "bob"),  # domains match case-insensitively
        ("root@example.org", "root"),  # mapped, then refused by the floor: audited as mapped
        ("daemon@example.org", "daemon"),
        ("root@any.domain", None),  # not a configured domain: audited as claimed
        ("alice@evil.example", None),
        ("alice@example.org.evil.example", None),
        ("alice@sub.example.org", None),  # subdomains are other domains
        ("alice@x@example.org", None),  # exactly one @
        ("alice", None),
        ("@example.org", None),
    ],
)
async def test_email_claims_map_only_in_configured_domains(
    email: str, expected: str | None, issuer: Issuer, unix_users: None
) -> None:
    """With SLURM_GRAPHQL_JWT_USER_CLAIM=email an address maps to its local part only in
    SLURM_GRAPHQL_JWT_EMAIL_DOMAINS, and never below the floor; anything else is 403
    PERMISSION_DENIED, audited."""
    settings = Settings.from_environ(issuer.environ(**EMAIL))
    with audit_lines() as lines:
        async with app_client(settings, {"local": CountingTransport(LocalTransport())}) as client:
            response = await client.post(
                "/graphql",
                json={"query": VIEWER},
                headers={
                    "Authorization": f"Bearer {issuer.token(email=email, email_verified=True)}"
                },
            )
    if expected in ("alice", "bob"):
        assert response.json()["data"]["viewer"]["user"] == expected
        assert lines == []
    else:
        assert response.status_code == 403
        assert response.json()["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
        assert [line["identity"] for line in lines] == [expected or email]


def test_the_email_claim_needs_its_domains(issuer: Issuer) -> None:
    """Choosing the email claim without SLURM_GRAPHQL_JWT_EMAIL_DOMAINS stops start-up, for
    jwt and apigateway alike."""
    with pytest.raises(SettingsError, match="EMAIL_DOMAINS"):
        Settings.from_environ(issuer.environ(SLURM_GRAPHQL_JWT_USER_CLAIM="email"))
    with pytest.raises(SettingsError, match="EMAIL_DOMAINS"):
        Settings.from_environ(
            {"SLURM_GRAPHQL_AUTH": "apigateway", "SLURM_GRAPHQL_JWT_USER_CLAIM": "email"}
        )
    with pytest.raises(SettingsError, match="EMAIL_DOMAINS"):
        Settings.from_environ(
            issuer.environ(**{**EMAIL, "SLURM_GRAPHQL_JWT_EMAIL_DOMAINS": "not a domain"})
        )


@pytest.mark.parametrize("verified", [None, False, "false", "False", 1])
async def test_an_unverified_email_claim_is_refused(
    verified: object, issuer: Issuer, unix_users: None
) -> None:
    """An address the identity provider has not verified may be anyone's (Cognito lets users
    change their own): bob claiming alice@example.org unverified is 403, audited, never alice."""
    settings = Settings.from_environ(issuer.environ(**EMAIL))
    app = create_app(settings, transports={"local": CountingTransport(LocalTransport())})
    token = issuer.token(email="alice@example.org", email_verified=verified)
    with audit_lines() as lines:
        async with (
            app.router.lifespan_context(app),
            httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://localhost"
            ) as client,
        ):
            response = await client.post(
                "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {token}"}
            )
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "PERMISSION_DENIED"
    assert [line["identity"] for line in lines] == ["alice@example.org"]


def test_api_gateway_passes_email_verified_as_a_string() -> None:
    """API Gateway flattens claims to strings: "true" is verified, "false" is not."""
    domains = frozenset({"example.org"})
    claims = {"email": "alice@example.org", "email_verified": "true"}
    found = identity_from_claims(claims, "email", "cognito:groups", None, None, domains)
    assert found is not None and found.user == "alice"
    with pytest.raises(IdentityRefused):
        identity_from_claims(
            {**claims, "email_verified": "false"}, "email", "cognito:groups", None, None, domains
        )


def test_the_servers_own_account_is_never_acted_as() -> None:
    """A server that does not run as root (local:// in development) refuses to act as its own
    account, which could read what the server reads; other accounts above the floor pass."""
    assert floor_violation("alice", 1000, server_account="alice") is not None
    assert floor_violation("bob", 1000, server_account="alice") is None
