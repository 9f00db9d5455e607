"""`slurm-graphql serve` runs on asyncio's own event loop, never uvloop.

uvloop starts a child with fork() from the event loop's thread: on a server holding a 10,000-job
snapshot (~150 MB) that is ~20 ms of a blocked loop per Slurm command, where asyncio's loop
(Python's subprocess, vfork) takes ~2 ms (bench/vs_slurmrestd.py: 3-4x the requests per second
for a job by id or the nodes list with the cache off).
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

from tests.support.server import free_port, running_process


def test_serve_does_not_load_uvloop() -> None:
    """The serving process maps no uvloop library, although uvicorn[standard] installs it."""
    assert importlib.util.find_spec("uvloop") is not None, "otherwise this test proves nothing"
    port = free_port()
    argv = [sys.executable, "-m", "server.cli", "serve", "--port", str(port)]
    with running_process(argv, f"http://127.0.0.1:{port}/healthz", {}) as pid:
        maps = Path(f"/proc/{pid}/maps").read_text()
    assert "uvloop" not in maps
