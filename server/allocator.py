"""Freed memory handed back to the system now and then (issue 18: RSS that only grew).

Under a long mixed load the server's RSS grew ~35 % in 10 minutes while the Python objects alive
after the warm-up grew by about 1 MB (bench/memory.py --trace): the growth is freed memory the
allocators keep. Python's own small-object allocator (pymalloc) returns an arena only when every
object in it is gone, and each snapshot's tens of thousands of short-lived rows share arenas with
longer-lived objects; glibc's malloc keeps freed heap pages unless asked. With
PYTHONMALLOC=malloc every object comes from glibc, and malloc_trim(0) gives the free pages back
wherever they are (78 MB of 278 MB in one measurement). So `serve` trims every TRIM_INTERVAL
seconds from a daemon thread (malloc_trim takes glibc's own locks); an operator who wants the
bound sets PYTHONMALLOC=malloc (README, Operations). Elsewhere than glibc this does nothing.
"""

from __future__ import annotations

import ctypes
import threading
from collections.abc import Callable

TRIM_INTERVAL = 30.0


def _malloc_trim() -> Callable[[], int] | None:
    try:
        trim = ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):  # not glibc (musl, macOS)
        return None
    trim.argtypes = (ctypes.c_size_t,)
    trim.restype = ctypes.c_int
    return lambda: int(trim(0))


def trim_periodically(interval: float = TRIM_INTERVAL) -> threading.Event | None:
    """Start the trimming thread; returns the event that stops it, or None without glibc."""
    trim = _malloc_trim()
    if trim is None:
        return None
    stop = threading.Event()

    def run() -> None:
        while not stop.wait(interval):
            trim()

    threading.Thread(target=run, name="malloc-trim", daemon=True).start()
    return stop
