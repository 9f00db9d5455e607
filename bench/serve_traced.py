"""`slurm-graphql serve` under tracemalloc, a snapshot written on SIGUSR1 (for bench/memory.py).

    python -m bench.serve_traced SNAPSHOT_PREFIX [serve options...]

The first SIGUSR1 starts tracing (so start-up and warm-up run at full speed: tracing everything
from the start made the server too slow to answer its health check on a busy machine); every
SIGUSR1 then writes `<prefix>-<n>.tracemalloc` (n = 1, 2, ...) after a full collection, so the
last snapshot diffed against the first shows what was allocated after the warm-up and is still
alive. Settings come from the environment, as serve reads them.
"""

from __future__ import annotations

import gc
import signal
import sys
import tracemalloc
from types import FrameType

from server.cli import main as serve

FRAMES = 8  # enough to see which of our modules holds what a library allocated


def main() -> int:
    prefix, argv = sys.argv[1], sys.argv[2:]
    taken = 0

    def dump(signum: int, frame: FrameType | None) -> None:
        nonlocal taken
        if not tracemalloc.is_tracing():
            tracemalloc.start(FRAMES)
        taken += 1
        gc.collect()
        tracemalloc.take_snapshot().dump(f"{prefix}-{taken}.tracemalloc")

    signal.signal(signal.SIGUSR1, dump)
    return serve(["serve", *argv])


if __name__ == "__main__":
    raise SystemExit(main())
