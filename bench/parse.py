"""How fast squeue output becomes job records, against `json.loads` of `squeue --json`.

    python bench/parse.py [--jobs 100000]

Target (issue 2): 100,000 jobs in <= 0.5 s and >= 5x faster than json.loads of the equivalent
`squeue --json` document (which only decodes JSON; it builds no records at all).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.synthetic import golden_dir, synthetic_squeue, synthetic_squeue_json
from resolvers.slurm.jobs import parse_squeue
from server.gc_tuning import tune_for_serving


def best_of(runs: int, work: Callable[[], object]) -> float:
    timings = []
    for _ in range(runs):
        gc.collect()
        started = time.perf_counter()
        work()
        timings.append(time.perf_counter() - started)
    return min(timings)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--jobs", type=int, default=100_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    # The collector's policy the server runs with (the parser itself leaves it alone).
    tune_for_serving()

    boundary = "bench0boundary"
    text = synthetic_squeue(args.jobs, boundary)
    document = synthetic_squeue_json(args.jobs)
    assert len(parse_squeue(text, boundary)) == args.jobs

    ours = best_of(args.runs, lambda: parse_squeue(text, boundary))
    rows = parse_squeue(text, boundary)
    # What the API pays later, for the rows a response shows or a filter reads.
    split_all = best_of(args.runs, lambda: [row.fields() for row in rows])
    theirs = best_of(args.runs, lambda: json.loads(document))
    print(f"rows from:                 {golden_dir().relative_to(golden_dir().parent.parent)}")
    print(f"jobs:                      {args.jobs:,}")
    print(f"squeue output:             {len(text.encode()) / 1e6:.1f} MB")
    print(f"squeue --json document:    {len(document.encode()) / 1e6:.1f} MB")
    print(f"parse_squeue:              {ours * 1000:.0f} ms  ({args.jobs / ours:,.0f} jobs/s)")
    print(f"json.loads(squeue --json): {theirs * 1000:.0f} ms")
    print(f"then splitting every row into its fields (done lazily): {split_all * 1000:.0f} ms")
    print(f"speed-up:                  {theirs / ours:.1f}x")
    verdict = ours <= 0.5 * args.jobs / 100_000 and theirs / ours >= 5
    print(f"target (<= 0.5 s per 100k, >= 5x): {'met' if verdict else 'NOT met'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
