"""SLURM_GRAPHQL_AUTH=jwt: OIDC tokens checked against a JWKS served on loopback, with real
RS256 and ES256 keys; every malformed or forged token is refused before anything runs."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from server.settings import Settings, SettingsError
from tests.support.app import app_client
from tests.support.counting import CountingTransport
from transport.local import LocalTransport

AUDIENCE = "client-123"
VIEWER = "{ viewer { user admin } }"


class Keys:
    def __init__(self) -> None:
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.other = rsa.generate_private_key(public_exponent=65537, key_size=2048)

    def jwks(self) -> dict[str, Any]:
        keys = []
        for kid, key, alg in (("rsa-1", self.rsa, "RS256"), ("ec-1", self.ec, "ES256")):
            jwk = json.loads(jwt.algorithms.get_default_algorithms()[alg].to_jwk(key.public_key()))
            keys.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return {"keys": keys}


@pytest.fixture(scope="module")
def issuer() -> Iterator[tuple[str, Keys]]:
    """An OIDC issuer on loopback: its JWKS at /.well-known/jwks.json."""
    keys = Keys()
    body = json.dumps(keys.jwks()).encode()

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/.well-known/jwks.json" else 404
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body if status == 200 else b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", keys
    finally:
        server.shutdown()
        server.server_close()


def settings_for(issuer_url: str) -> Settings:
    return Settings.from_environ(
        {
            "SLURM_GRAPHQL_AUTH": "jwt",
            "SLURM_GRAPHQL_JWT_ISSUER": issuer_url,
            "SLURM_GRAPHQL_JWT_AUDIENCE": AUDIENCE,
            "SLURM_GRAPHQL_JWT_USER_CLAIM": "cognito:username",
            "SLURM_GRAPHQL_JWT_ADMIN_GROUP": "hpc-admins",
            # These tests present a dozen bad tokens from one address on purpose: what they
            # check is each refusal, not the block that follows (tests/security/test_auth_failures).
            "SLURM_GRAPHQL_AUTH_FAILURES_PER_MINUTE": "100",
        }
    )


def claims(issuer_url: str, **changes: Any) -> dict[str, Any]:
    now = int(time.time())
    base = {
        "iss": issuer_url,
        "aud": AUDIENCE,
        "exp": now + 300,
        "nbf": now - 10,
        "iat": now - 10,
        "cognito:username": "alice",
    }
    base.update(changes)
    return {k: v for k, v in base.items() if v is not None}


def pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


async def test_valid_tokens_act_as_their_user(issuer: tuple[str, Keys]) -> None:
    """RS256 and ES256 ID tokens, and a Cognito access token (client_id, no aud), are accepted;
    the user claim names the POSIX user, and the admin group makes an administrator."""
    url, keys = issuer
    rs = jwt.encode(claims(url), keys.rsa, "RS256", headers={"kid": "rsa-1"})
    es = jwt.encode(
        claims(url, **{"cognito:groups": ["hpc-admins"], "cognito:username": "carol"}),
        keys.ec,
        "ES256",
        headers={"kid": "ec-1"},
    )
    access = jwt.encode(
        claims(url, aud=None, client_id=AUDIENCE, **{"cognito:username": "bob"}),
        keys.rsa,
        "RS256",
        headers={"kid": "rsa-1"},
    )
    async with app_client(settings_for(url), {"local": LocalTransport()}) as client:
        seen = []
        for token in (rs, es, access):
            response = await client.post(
                "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {token}"}
            )
            assert response.status_code == 200, response.text
            seen.append(response.json()["data"]["viewer"])
    assert seen == [
        {"user": "alice", "admin": False},
        {"user": "carol", "admin": True},
        {"user": "bob", "admin": False},
    ]


async def test_forged_and_stale_tokens_are_refused(issuer: tuple[str, Keys]) -> None:
    """Expired, not yet valid, wrong issuer, wrong audience, unknown kid, another key, alg none,
    HS256 signed with the public key, a bad user name, garbage: 401, and nothing runs."""
    url, keys = issuer
    rsa_kid = {"kid": "rsa-1"}
    now = int(time.time())
    hs256_confusion = _hs256_with_public_key(claims(url), pem(keys.rsa))
    tokens = {
        "expired": jwt.encode(claims(url, exp=now - 60), keys.rsa, "RS256", headers=rsa_kid),
        "not yet valid": jwt.encode(claims(url, nbf=now + 600), keys.rsa, "RS256", headers=rsa_kid),
        "wrong issuer": jwt.encode(
            claims(url, iss="https://evil.example"), keys.rsa, "RS256", headers=rsa_kid
        ),
        "wrong audience": jwt.encode(claims(url, aud="other"), keys.rsa, "RS256", headers=rsa_kid),
        "no expiry": jwt.encode(claims(url, exp=None), keys.rsa, "RS256", headers=rsa_kid),
        "unknown kid": jwt.encode(claims(url), keys.rsa, "RS256", headers={"kid": "nope"}),
        "another key": jwt.encode(claims(url), keys.other, "RS256", headers=rsa_kid),
        # PyJWT wants key None for alg none, which its type hints do not allow.
        "alg none": jwt.encode(claims(url), None, "none", headers=rsa_kid),  # type: ignore[arg-type]
        "hs256 with the public key": hs256_confusion,
        "bad user name": jwt.encode(
            claims(url, **{"cognito:username": "Root;rm"}), keys.rsa, "RS256", headers=rsa_kid
        ),
        "garbage": "not.a.jwt",
    }
    transport = CountingTransport(LocalTransport())
    async with app_client(settings_for(url), {"local": transport}) as client:
        for why, token in tokens.items():
            response = await client.post(
                "/graphql",
                json={"query": "{ cluster { jobs { totalCount } } }"},
                headers={"Authorization": f"Bearer {token}"},
            )
            assert response.status_code == 401, why
            assert response.json()["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert transport.calls == 0


def _hs256_with_public_key(payload: dict[str, Any], public_pem: bytes) -> str:
    """The classic confusion attack: HMAC-sign with the RSA public key as the secret. PyJWT
    refuses to make one, so it is assembled by hand."""
    import base64
    import hashlib
    import hmac

    def b64(data: bytes) -> str:
        return base64.urlsafe_b64encode(data).rstrip(b"=").decode()

    header = b64(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
    body = b64(json.dumps(payload).encode())
    signature = hmac.new(public_pem, f"{header}.{body}".encode(), hashlib.sha256).digest()
    return f"{header}.{body}.{b64(signature)}"


def test_jwt_settings_refuse_symmetric_algorithms_and_plain_http() -> None:
    """HS256 cannot be configured, and the issuer must be https (loopback aside, for tests)."""
    base = {
        "SLURM_GRAPHQL_AUTH": "jwt",
        "SLURM_GRAPHQL_JWT_ISSUER": "https://idp.example",
        "SLURM_GRAPHQL_JWT_AUDIENCE": AUDIENCE,
    }
    assert Settings.from_environ(base).jwt is not None
    without_audience = {k: v for k, v in base.items() if k != "SLURM_GRAPHQL_JWT_AUDIENCE"}
    with pytest.raises(SettingsError, match="AUDIENCE"):
        Settings.from_environ(without_audience)
    with pytest.raises(SettingsError, match="asymmetric"):
        Settings.from_environ({**base, "SLURM_GRAPHQL_JWT_ALGORITHMS": "HS256"})
    with pytest.raises(SettingsError, match="https"):
        Settings.from_environ({**base, "SLURM_GRAPHQL_JWT_ISSUER": "http://idp.example"})
    with pytest.raises(SettingsError, match="AUTH"):
        Settings.from_environ({**base, "SLURM_GRAPHQL_AUTH": "magic"})


async def test_an_explicit_map_names_the_user(issuer: tuple[str, Keys], tmp_path: Any) -> None:
    """SLURM_GRAPHQL_USER_MAP turns a claim value into a POSIX user; unmapped values follow the
    claim rule (an e-mail's local part, in an accepted domain); a map naming an invalid user
    stops start-up."""
    url, keys = issuer
    user_map = tmp_path / "users.json"
    user_map.write_text(json.dumps({"alice@example.org": "asmith"}))
    environ = {
        "SLURM_GRAPHQL_AUTH": "jwt",
        "SLURM_GRAPHQL_JWT_ISSUER": url,
        "SLURM_GRAPHQL_JWT_AUDIENCE": AUDIENCE,
        "SLURM_GRAPHQL_JWT_USER_CLAIM": "email",
        "SLURM_GRAPHQL_JWT_EMAIL_DOMAINS": "example.org",
        "SLURM_GRAPHQL_USER_MAP": str(user_map),
    }
    seen = []
    async with app_client(Settings.from_environ(environ), {"local": LocalTransport()}) as client:
        for email in ("alice@example.org", "bob@example.org"):
            token = jwt.encode(
                claims(url, email=email, email_verified=True),
                keys.rsa,
                "RS256",
                headers={"kid": "rsa-1"},
            )
            response = await client.post(
                "/graphql", json={"query": VIEWER}, headers={"Authorization": f"Bearer {token}"}
            )
            seen.append(response.json()["data"]["viewer"]["user"])
    assert seen == ["asmith", "bob"]
    user_map.write_text(json.dumps({"x": "Not A User"}))
    with pytest.raises(SettingsError, match="USER_MAP"):
        Settings.from_environ(environ)
