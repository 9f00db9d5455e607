"""Freed memory goes back to the system: serve's malloc_trim thread (server/allocator.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]

# Rows of a snapshot, most freed and every 64th kept (as longer-lived objects sit between them):
# how many MiB of RSS one trim gives back, with every object from glibc (PYTHONMALLOC=malloc).
PROBE = """
import time
from server.allocator import trim_periodically
def rss():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) // 1024
rows = [b"x" * 100 + str(i).encode() for i in range(500_000)]
kept = rows[::64]
del rows
before = rss()
stop = trim_periodically(0.05)
if stop is None:
    print("no-glibc")
    raise SystemExit
time.sleep(0.5)
stop.set()
print(before - rss())
"""


def test_a_trim_gives_freed_heap_pages_back() -> None:
    """Rows freed between kept ones stay resident until the trimming thread runs; then go."""
    env = {**os.environ, "PYTHONMALLOC": "malloc"}
    done = subprocess.run(
        [sys.executable, "-c", PROBE], cwd=REPO, env=env, capture_output=True, text=True, check=True
    )
    given_back = done.stdout.strip()
    if given_back == "no-glibc":
        pytest.skip("malloc is not glibc's here")
    assert int(given_back) >= 20, f"only {given_back} MiB given back"
