"""Services the tests start as real processes on free loopback ports, and stop by PID."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
# Loopback only: never through a proxy from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _answers(url: str) -> bool:
    try:
        with _OPENER.open(url, timeout=1):
            return True
    except urllib.error.HTTPError:
        return True  # an HTTP error is an answer all the same
    except OSError:
        return False


@contextmanager
def running_process(
    argv: Sequence[str], probe_url: str, environ: Mapping[str, str] | None
) -> Iterator[int]:
    """Run `argv` until `probe_url` answers, yield its PID, then SIGTERM it (SIGKILL after 10 s).

    Its output goes to a temporary file (a pipe nobody reads would fill and block it), shown if
    it does not start.
    """
    with tempfile.TemporaryFile() as log:
        process = subprocess.Popen(
            list(argv),
            cwd=REPO,
            env={**os.environ, **(environ or {})},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 30
            while not _answers(probe_url):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-3000:]
                    raise RuntimeError(f"{' '.join(argv[:3])} did not start: {output}")
                time.sleep(0.05)
            yield process.pid
        finally:
            _stop(process)


@contextmanager
def running_server(environ: Mapping[str, str] | None = None) -> Iterator[str]:
    """`slurm-graphql serve` on a free loopback port until /healthz answers; yields its URL."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    with running_process(argv, f"{base_url}/healthz", environ):
        yield base_url


@dataclass(frozen=True)
class Replica:
    """One `slurm-graphql serve` process of running_servers."""

    url: str
    pid: int


@contextmanager
def running_servers(
    count: int, environ: Mapping[str, str] | None = None
) -> Iterator[list[Replica]]:
    """`count` `slurm-graphql serve` processes with the same environment, started at once (each
    imports for seconds on a loaded machine), each on its own free loopback port; yields them
    once every /healthz answers, then SIGTERMs whichever are still running."""
    with ExitStack() as stack:
        starting = []
        for _ in range(count):
            port = free_port()
            log = stack.enter_context(tempfile.TemporaryFile())
            argv = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1"]
            process = subprocess.Popen(
                [*argv, "--port", str(port)],
                cwd=REPO,
                env={**os.environ, **(environ or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            stack.callback(_stop, process)
            starting.append((f"http://127.0.0.1:{port}", process, log))
        deadline = time.monotonic() + 60
        for url, process, log in starting:
            while not _answers(f"{url}/healthz"):
                if process.poll() is not None or time.monotonic() > deadline:
                    log.seek(0)
                    output = log.read().decode(errors="replace")[-3000:]
                    raise RuntimeError(f"slurm-graphql serve did not start: {output}")
                time.sleep(0.05)
        yield [Replica(url, process.pid) for url, process, _ in starting]


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return  # a test killed it
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
