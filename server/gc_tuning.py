"""Garbage collection for a long-running server with many open subscriptions.

CPython's cyclic collector stops the event loop while it walks every tracked object. With a
thousand WebSocket subscribers open, a full collection took 200-650 ms, which every event fanned
out at that moment waited for (bench/subscriptions.py: p99 214 ms). Objects made at start-up
(modules, the schema) never die, so they are frozen out of the collector's walks, and the young
generation is collected less often, so full collections become rare. Reference counting still
frees acyclic garbage at once; cycles wait a little longer.

This is the process's only garbage-collection policy, set where a server starts (the CLI and
the Lambda handler's init): parsing a 100,000-row queue and fanning a poll out to subscribers
allocate many short-lived containers, and these thresholds are what keep the collector from
walking them over and over; no library module switches the collector off and on.
"""

from __future__ import annotations

import gc

# CPython's defaults are (700, 10, 10).
THRESHOLDS = (50_000, 20, 100)


def tune_for_serving() -> None:
    """Call once the app is built, before serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
