"""Serve the API over a recorded N-job cluster with uvicorn (one worker), for bench/query.py.

python -m bench.serve_recorded --port 8100 --jobs 10000 --cache-ttl 1.0
"""

from __future__ import annotations

import argparse

import uvicorn

from bench.recorded import RecordedCluster
from server.app import create_app
from server.settings import Settings
from tests.support.counting import MockTransport


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--cache-ttl", type=float, default=1.0)
    parser.add_argument("--no-response-cache", action="store_true")
    parser.add_argument("--ui", action="store_true", help="serve the dashboard at /ui")
    args = parser.parse_args()
    settings = Settings(
        clusters=(("local", "local://"),),
        cache_ttl=args.cache_ttl,
        response_cache=not args.no_response_cache,
        ui=args.ui,
    )
    app = create_app(
        settings, transports={"local": MockTransport(RecordedCluster(args.jobs), url="recorded://")}
    )
    uvicorn.run(app, host="127.0.0.1", port=args.port, log_level="warning", access_log=False)


if __name__ == "__main__":
    main()
