"""An OIDC issuer on loopback: a real RSA key, its JWKS served over HTTP, and signed tokens.

It also runs the authorization-code flow with PKCE (S256) for a browser, as far as a test needs:
a discovery document, an /authorize that "logs in" `Issuer.login_as` at once and redirects back
with a one-time code, and a /token that hands out an ID token only for the code's verifier."""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "client-123"


@dataclass
class Issuer:
    url: str
    key: rsa.RSAPrivateKey
    # Who /authorize signs in, and the codes it gave out: code -> (challenge, redirect, user).
    login_as: str = "alice"
    codes: dict[str, tuple[str, str, str]] = field(default_factory=dict)
    refused_exchanges: int = 0

    def token(self, **claims: Any) -> str:
        """A valid RS256 token from this issuer with `claims` (None removes a claim)."""
        now = int(time.time())
        base = {"iss": self.url, "aud": AUDIENCE, "exp": now + 300, "iat": now - 10}
        base.update(claims)
        body = {k: v for k, v in base.items() if v is not None}
        return jwt.encode(body, self.key, "RS256", headers={"kid": "rsa-1"})

    def environ(self, **more: str) -> dict[str, str]:
        """The settings of SLURM_GRAPHQL_AUTH=jwt against this issuer."""
        return {
            "SLURM_GRAPHQL_AUTH": "jwt",
            "SLURM_GRAPHQL_JWT_ISSUER": self.url,
            "SLURM_GRAPHQL_JWT_AUDIENCE": AUDIENCE,
            **more,
        }


@contextmanager
def oidc_issuer() -> Iterator[Issuer]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    public = json.loads(jwt.algorithms.get_default_algorithms()["RS256"].to_jwk(key.public_key()))
    body = json.dumps({"keys": [{**public, "kid": "rsa-1", "alg": "RS256", "use": "sig"}]})

    issuer: Issuer | None = None

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            assert issuer is not None
            path = urlsplit(self.path)
            if path.path == "/.well-known/openid-configuration":
                self.answer(200, json.dumps(discovery(issuer.url)))
            elif path.path == "/authorize":
                query = {k: v[0] for k, v in parse_qs(path.query).items()}
                if query.get("code_challenge_method") != "S256" or "code_challenge" not in query:
                    self.answer(400, json.dumps({"error": "invalid_request"}))
                    return
                code = secrets.token_urlsafe(16)
                redirect = query["redirect_uri"]
                issuer.codes[code] = (query["code_challenge"], redirect, issuer.login_as)
                target = redirect + "?" + urlencode({"code": code, "state": query["state"]})
                self.send_response(302)
                self.send_header("Location", target)
                self.end_headers()
            else:
                found = path.path == "/.well-known/jwks.json"
                self.answer(200 if found else 404, body if found else "{}")

        def do_POST(self) -> None:
            assert issuer is not None
            length = int(self.headers.get("Content-Length") or 0)
            form = {k: v[0] for k, v in parse_qs(self.rfile.read(length).decode()).items()}
            challenge, redirect, user = issuer.codes.pop(form.get("code", ""), ("", "", ""))
            digest = hashlib.sha256(form.get("code_verifier", "").encode()).digest()
            expected = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
            if (
                self.path != "/token"
                or not challenge
                or challenge != expected
                or (form.get("redirect_uri") != redirect)
            ):
                issuer.refused_exchanges += 1
                self.answer(400, json.dumps({"error": "invalid_grant"}))
                return
            token = issuer.token(username=user)
            self.answer(200, json.dumps({"id_token": token, "token_type": "Bearer"}))

        def answer(self, status: int, text: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            # The dashboard reads discovery and exchanges its code from another origin.
            self.send_header("Access-Control-Allow-Origin", "*")
            self.end_headers()
            self.wfile.write(text.encode())

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        issuer = Issuer(f"http://127.0.0.1:{server.server_address[1]}", key)
        yield issuer
    finally:
        server.shutdown()
        server.server_close()


def discovery(url: str) -> dict[str, object]:
    """The issuer's OpenID configuration: where a browser signs in and exchanges its code."""
    return {
        "issuer": url,
        "authorization_endpoint": f"{url}/authorize",
        "token_endpoint": f"{url}/token",
        "jwks_uri": f"{url}/.well-known/jwks.json",
        "code_challenge_methods_supported": ["S256"],
    }
