"""The container image's command, run from a plain venv (no Docker engine here) against the real
cluster, and the Dockerfile linted with hadolint."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from tests.support.dockerfile import Stage, stages
from tests.support.server import free_port

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"
VENV_BIN = Path(sys.executable).parent


@pytest.fixture(scope="module")
def image() -> Stage:
    """The final stage of the Dockerfile: what the container runs."""
    return stages(DOCKERFILE)[-1]


@dataclass
class Container:
    url: str
    environ: dict[str, str]
    process: subprocess.Popen[bytes]
    output: Path


def container_environ(image: Stage, port: int, slurm_conf: str) -> dict[str, str]:
    """The image's ENV, with this venv's bin for /opt/venv/bin, and loopback on a free port
    instead of every interface on 8000 (other servers run on this machine)."""
    environ = {k: v for k, v in os.environ.items() if not k.startswith("SLURM_GRAPHQL_")}
    environ.update(image.env)
    environ["PATH"] = f"{VENV_BIN}:{os.environ['PATH']}"
    environ.update(SLURM_GRAPHQL_HOST="127.0.0.1", SLURM_GRAPHQL_PORT=str(port))
    # Anonymous on loopback, the server answers loopback Host names only, and the name the
    # proxy test sends (as a deployment behind a load balancer would list its own).
    environ["SLURM_GRAPHQL_ALLOWED_HOSTS"] = "api.example.org"
    environ["SLURM_CONF"] = slurm_conf
    return environ


@contextmanager
def run_container(image: Stage, slurm_cluster: str) -> Iterator[Container]:
    """ENTRYPOINT + CMD exactly as the Dockerfile has them, until /healthz answers."""
    port = free_port()
    environ = container_environ(image, port, slurm_cluster)
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as scratch:
        output = Path(scratch) / "output"
        with output.open("wb") as sink:
            process = subprocess.Popen(
                image.entrypoint + image.cmd,
                env=environ,
                cwd=scratch,  # not the repository: the installed package must be enough
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
            )
        try:
            deadline = time.monotonic() + 30
            while not _answers(f"{url}/healthz"):
                assert process.poll() is None, output.read_text()
                assert time.monotonic() < deadline, output.read_text()
                time.sleep(0.05)
            yield Container(url, environ, process, output)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


@pytest.fixture(scope="module")
def container(image: Stage, slurm_cluster: str) -> Iterator[Container]:
    """The image's command, shared by the tests that only send it requests."""
    with run_container(image, slurm_cluster) as running:
        yield running


def _answers(url: str) -> bool:
    try:
        httpx.get(url, timeout=1, trust_env=False)
    except httpx.TransportError:
        return False
    return True


def test_the_image_runs_as_a_non_root_user_with_a_healthcheck(image: Stage) -> None:
    """The final stage's user is numeric and not root; there is a HEALTHCHECK and a command."""
    text = DOCKERFILE.read_text()
    users = [line.split()[1] for line in text.splitlines() if line.startswith("USER ")]
    assert users and users[-1].split(":")[0].isdigit() and users[-1].split(":")[0] != "0"
    assert image.healthcheck and image.entrypoint == ["slurm-graphql", "serve"]
    assert len(stages(DOCKERFILE)) >= 2  # multi-stage: no build tools in the runtime image


def test_the_command_serves_the_api(container: Container) -> None:
    """Health, readiness, a query answered from the real cluster, metrics and request ids."""
    with httpx.Client(base_url=container.url, trust_env=False, timeout=30) as client:
        assert client.get("/healthz").json() == {"status": "ok"}
        query = "query Parts { cluster { name partitions { name } } }"
        response = client.post(
            "/graphql", json={"query": query}, headers={"X-Request-Id": "container-1"}
        )
        # The id is the server's own (a caller's is only logged, as client_request_id).
        request_id = response.headers["x-request-id"]
        assert request_id != "container-1" and re.fullmatch(r"[0-9a-f]{32}", request_id)
        partitions = {p["name"] for p in response.json()["data"]["cluster"]["partitions"]}
        assert partitions == {"debug", "batch"}
        assert client.get("/readyz").status_code == 200
        assert 'operation="Parts"' in client.get("/metrics").text


def test_websockets_are_enabled(container: Container) -> None:
    """A WebSocket handshake reaches the app (which refuses it on /healthz, an HTTP-only route,
    with 403) instead of being answered as plain HTTP, as it is without a WebSocket library."""
    port = int(container.url.rsplit(":", 1)[1])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as connection:
        connection.sendall(
            b"GET /healthz HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
            b"Sec-WebSocket-Version: 13\r\n\r\n"
        )
        status_line = connection.recv(4096).split(b"\r\n")[0]
    assert status_line == b"HTTP/1.1 403 Forbidden"


def test_proxy_headers_are_trusted(container: Container) -> None:
    """X-Forwarded-Proto from a proxy that is not on the server's own address (as the ALB is
    not) decides the scheme of URLs the app builds: the redirect from /healthz/ points to https.
    uvicorn trusts only 127.0.0.1 by default; the image's FORWARDED_ALLOW_IPS widens that."""
    elsewhere = httpx.HTTPTransport(local_address="127.0.0.2")
    with httpx.Client(base_url=container.url, trust_env=False, transport=elsewhere) as client:
        response = client.get(
            "/healthz/", headers={"X-Forwarded-Proto": "https", "Host": "api.example.org"}
        )
    assert response.status_code == 307
    assert response.headers["location"] == "https://api.example.org/healthz"


def test_the_healthcheck_command(image: Stage, container: Container) -> None:
    """HEALTHCHECK's own command succeeds against the running server, and fails without one."""
    ok = subprocess.run(image.healthcheck, env=container.environ, timeout=10, check=False)
    assert ok.returncode == 0
    nowhere = {**container.environ, "SLURM_GRAPHQL_PORT": str(free_port())}
    failed = subprocess.run(
        image.healthcheck, env=nowhere, timeout=10, check=False, capture_output=True
    )
    assert failed.returncode != 0


def test_sigterm_stops_it_gracefully(image: Stage, slurm_cluster: str) -> None:
    """SIGTERM (ECS's stop signal) runs the app's shutdown before the process ends (uvicorn then
    re-raises the signal, as a process without a handler would end); every line it writes
    is JSON (uvicorn's included), as the image's SLURM_GRAPHQL_LOG_FORMAT asks."""
    with run_container(image, slurm_cluster) as container:
        query = {"query": "query Parts { cluster { partitions { name } } }"}
        httpx.post(f"{container.url}/graphql", json=query, trust_env=False, timeout=30)
        container.process.send_signal(signal.SIGTERM)
        stopped = container.process.wait(timeout=15)
        output = container.output.read_text()
    assert stopped == -signal.SIGTERM
    assert "Application shutdown complete." in output
    lines = output.splitlines()
    # Every line, uvicorn's start-up and shutdown included, in the image's format.
    requests = [json.loads(x) for x in lines]
    assert any(r.get("operation") == "Parts" and r["status"] == 200 for r in requests), lines


def test_the_build_context_makes_a_complete_package(image: Stage, tmp_path: Path) -> None:
    """The files the Dockerfile copies (and .dockerignore lets through) build a wheel with every
    package, GraphiQL's assets and the `slurm-graphql` command."""
    build_stage = stages(DOCKERFILE)[0]
    ignore = (REPO / ".dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert {source.rstrip("/") for source in build_stage.copied} == allowed
    for source in build_stage.copied:
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, tmp_path / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(origin, tmp_path / source)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(tmp_path)],
        check=True,
        timeout=120,
    )  # fmt: skip
    [wheel] = (tmp_path / "dist").glob("*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    for module in ("server/app.py", "server/lambda_handler.py", "schema/query.py",
                   "resolvers/source.py", "transport/ssm.py",
                   "server/static/graphiql/graphiql.min.js", "server/static/page/graphiql.js",
                   "server/static/page/graphiql.css"):  # fmt: skip
        assert module in names
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert "slurm-graphql = server.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_hadolint_passes_and_would_catch_mistakes(tmp_path: Path) -> None:
    """hadolint (from PyPI) finds nothing in the Dockerfile, and does flag a careless one."""
    hadolint = str(VENV_BIN / "hadolint")
    clean = subprocess.run([hadolint, str(DOCKERFILE)], capture_output=True, text=True)
    assert clean.returncode == 0 and clean.stdout == "", clean.stdout
    careless = tmp_path / "Dockerfile"
    careless.write_text("FROM python\nRUN apt-get install curl\nCMD python app.py\n")
    flagged = subprocess.run([hadolint, str(careless)], capture_output=True, text=True)
    assert flagged.returncode != 0
    for rule in ("DL3006", "DL3008", "DL3025"):
        assert rule in flagged.stdout
