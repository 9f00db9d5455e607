"""An OIDC issuer on loopback: a real RSA key, its JWKS served over HTTP, and signed tokens."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

AUDIENCE = "client-123"


@dataclass
class Issuer:
    url: str
    key: rsa.RSAPrivateKey

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

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            found = self.path == "/.well-known/jwks.json"
            self.send_response(200 if found else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode() if found else b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield Issuer(f"http://127.0.0.1:{server.server_address[1]}", key)
    finally:
        server.shutdown()
        server.server_close()
