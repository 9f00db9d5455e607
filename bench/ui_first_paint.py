"""First paint and first data of the dashboard (/ui) over a recorded 10,000-job cluster.

python -m bench.ui_first_paint [--jobs 10000] [--runs 5]

Serves bench.serve_recorded with --ui on a free loopback port and loads each view in Debian's
headless Chromium, each time in a fresh tab state (a new navigation, HTTP cache disabled):
- first paint: the browser's `first-contentful-paint` (the shell, before any data);
- data shown: navigation start to the moment the view marks its first answer rendered
  (`data-loaded`), i.e. its one GraphQL query answered and drawn, each load with the server's
  snapshot cache cold (the load starts past its TTL).
Prints the median and worst of each, and the bytes the view's query answer weighed.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.support.browser import WebDriver, headless_chromium
from tests.support.server import free_port, running_process

VIEWS = (("overview", ".overview"), ("jobs", ".table"))
CACHE_TTL = 1.0  # bench.serve_recorded's default --cache-ttl

_TIMES = """
const paint = performance.getEntriesByName("first-contentful-paint")[0];
const el = document.querySelector(arguments[0]);
const graphql = performance.getEntriesByType("resource").filter(e => e.name.endsWith("/graphql"));
return {paint: paint ? paint.startTime : null,
        loaded: el && el.dataset.loaded ? Number(el.dataset.loaded) - performance.timeOrigin : null,
        bytes: graphql.map(e => e.encodedBodySize)};
"""


def loaded(selector: str) -> Callable[[WebDriver], bool]:
    """Whether the view under `selector` has drawn its first answer."""

    def check(driver: WebDriver) -> bool:
        return bool(driver.execute_script(_TIMES, selector)["loaded"])

    return check


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    argv = [
        sys.executable,
        "-m",
        "bench.serve_recorded",
        "--port",
        str(port),
        "--jobs",
        str(args.jobs),
        "--ui",
    ]
    with running_process(argv, f"{base}/healthz", None), headless_chromium() as driver:
        driver.execute_cdp_cmd("Network.setCacheDisabled", {"cacheDisabled": True})
        # Warm the server (first snapshot of the recorded cluster, imports) once.
        driver.get(f"{base}/ui#/jobs")
        WebDriverWait(driver, 60).until(lambda d: d.find_elements(By.CSS_SELECTOR, ".jobs"))
        for view, selector in VIEWS:
            paints, loads, sizes = [], [], []
            for _ in range(args.runs):
                driver.get("about:blank")
                # Past the snapshot cache's TTL (bench.serve_recorded's 1 s): every load finds
                # the cache cold and the server reads the whole queue, the case the figure is for
                # (a quick machine otherwise loads within the TTL and measures a warm cache).
                time.sleep(CACHE_TTL + 0.2)
                driver.get(f"{base}/ui#/{view}")
                WebDriverWait(driver, 30, poll_frequency=0.01).until(loaded(selector))
                time.sleep(0.2)
                found = driver.execute_script(_TIMES, selector)
                paints.append(found["paint"])
                loads.append(found["loaded"])
                sizes.append(max(found["bytes"] or [0]))
            print(
                json.dumps(
                    {
                        "view": view,
                        "jobs": args.jobs,
                        "first_paint_ms": {
                            "median": round(statistics.median(paints)),
                            "max": round(max(paints)),
                        },
                        "data_shown_ms": {
                            "median": round(statistics.median(loads)),
                            "max": round(max(loads)),
                        },
                        "largest_answer_bytes": max(sizes),
                    }
                )
            )


if __name__ == "__main__":
    main()
