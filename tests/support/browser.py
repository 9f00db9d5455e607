"""Helpers for browser tests: Debian's headless Chromium driven by selenium, offline.

Only the system ``/usr/bin/chromium`` and ``/usr/bin/chromedriver`` are used (Debian
packages ``chromium`` and ``chromium-driver``). The driver path is passed explicitly, so
selenium-manager never runs and nothing is downloaded.

Typical use::

    if not chromium_available():
        pytest.skip("needs chromium and chromium-driver")
    with headless_chromium() as driver:
        text = run_query_in_graphiql(driver, "http://127.0.0.1:8000", "{ hello }")
        assert all(url.startswith("http://127.0.0.1:8000/") for url in requested_urls(driver))
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlencode, urlsplit

from selenium.common.exceptions import TimeoutException, WebDriverException
from selenium.webdriver.chrome.options import Options as ChromeOptions
from selenium.webdriver.chrome.service import Service as ChromeService
from selenium.webdriver.chrome.webdriver import WebDriver
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.command import Command
from selenium.webdriver.support.wait import WebDriverWait

__all__ = [
    "CHROMEDRIVER",
    "CHROMIUM",
    "CHROMIUM_FLAGS",
    "EXECUTE_BUTTON",
    "QUERY_EDITOR",
    "RESULT_PANE",
    "WebDriver",
    "chromium_available",
    "console_messages",
    "graphiql_url",
    "headless_chromium",
    "requested_urls",
    "response_statuses",
    "result_text",
    "run_query_in_graphiql",
    "websocket_handshakes",
]

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")

CHROMIUM_FLAGS: tuple[str, ...] = (
    "--headless",
    "--no-sandbox",  # tests often run as root / in containers without user namespaces
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-dev-shm-usage",  # small /dev/shm in containers crashes renderers
    "--no-proxy-server",  # tests only talk to local servers; ignore *_proxy variables
    "--window-size=1280,900",
)

# GraphiQL 3.x DOM (graphiql 3.8.3 / @graphiql/react 0.28).
EXECUTE_BUTTON = ".graphiql-execute-button"
QUERY_EDITOR = ".graphiql-query-editor .CodeMirror"
RESULT_PANE = ".graphiql-response .result-window"

# URL schemes that never leave the browser; requested_urls() leaves them out.
_LOCAL_SCHEMES = frozenset({"data", "blob", "about", "chrome", "chrome-untrusted", "devtools"})

# Network events already drained from each driver's performance log (reading the log
# empties it, so _network_events() keeps what it has seen).
_seen_events: weakref.WeakKeyDictionary[WebDriver, list[tuple[str, dict[str, Any]]]] = (
    weakref.WeakKeyDictionary()
)
_seen_console: weakref.WeakKeyDictionary[WebDriver, list[str]] = weakref.WeakKeyDictionary()

# Full text of a CodeMirror 5 editor (GraphiQL 3 keeps the instance on the wrapper
# element); falls back to the rendered text. Returns null when the element is absent.
_CODEMIRROR_VALUE_JS = """
const el = document.querySelector(arguments[0]);
if (!el) { return null; }
const cm = el.CodeMirror || (el.querySelector(".CodeMirror") || {}).CodeMirror;
return cm ? cm.getValue() : el.innerText;
"""


def chromium_available() -> bool:
    """True when Debian's chromium and chromedriver are installed and executable."""
    return all(os.access(path, os.X_OK) for path in (CHROMIUM, CHROMEDRIVER))


@contextlib.contextmanager
def headless_chromium(*extra_flags: str) -> Iterator[WebDriver]:
    """Start a headless Chromium with a fresh profile; quit it and remove the profile after.

    The performance log (network events) and the browser console log are enabled, for
    :func:`requested_urls` and :func:`console_messages`.
    """
    if not chromium_available():
        raise RuntimeError(
            f"{CHROMIUM} and {CHROMEDRIVER} are required: apt-get install -y chromium "
            "chromium-driver"
        )
    profile = tempfile.mkdtemp(prefix="slurm-graphql-chromium-")
    options = ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*CHROMIUM_FLAGS, *extra_flags, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"performance": "ALL", "browser": "ALL"})
    # An explicit executable_path makes selenium skip selenium-manager (no download).
    # A new session lets us kill chromedriver and every browser process it started,
    # should a normal quit fail.
    service = ChromeService(
        executable_path=str(CHROMEDRIVER),
        log_output=subprocess.DEVNULL,
        popen_kw={"start_new_session": True},
    )
    driver: WebDriver | None = None
    try:
        driver = WebDriver(options=options, service=service)
        # Headless Chromium starts on its internal new-tab page; leave it and drop the
        # log entries it produced so the logs only show what the test caused.
        driver.get("about:blank")
        _drain_log(driver, "performance")
        _drain_log(driver, "browser")
        yield driver
    finally:
        try:
            if driver is not None:
                # A failed quit is not fatal: the whole process group is killed below.
                with contextlib.suppress(Exception):
                    driver.quit()
        finally:
            _kill_session(service)
            shutil.rmtree(profile, ignore_errors=True)


def _kill_session(service: ChromeService) -> None:
    """Stop chromedriver and kill whatever is left of the session it leads."""
    process: subprocess.Popen[bytes] | None = getattr(service, "process", None)
    with contextlib.suppress(Exception):
        service.stop()
    if process is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
        with contextlib.suppress(Exception):
            process.wait(timeout=5)


def graphiql_url(base_url: str, query: str) -> str:
    """``{base_url}/graphql?query=<query>``, percent-encoded."""
    return f"{base_url.rstrip('/')}/graphql?{urlencode({'query': query}, quote_via=quote)}"


def _editor_value(driver: WebDriver, selector: str) -> str | None:
    value = driver.execute_script(_CODEMIRROR_VALUE_JS, selector)
    return value if isinstance(value, str) else None


def result_text(driver: WebDriver) -> str:
    """The current content of GraphiQL's result pane ("" if there is none)."""
    return _editor_value(driver, RESULT_PANE) or ""


def _is_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True


def run_query_in_graphiql(driver: WebDriver, base_url: str, query: str, timeout: float = 20) -> str:
    """Run ``query`` through the GraphiQL page at ``{base_url}/graphql``; return the result.

    Opens the page with ``?query=``, waits until GraphiQL shows the query, clicks the
    execute button and waits until the result pane holds non-empty JSON, whose text is
    returned. GraphiQL's local storage for the origin is cleared first, so a response
    persisted by an earlier run cannot be mistaken for this one.
    """
    parts = urlsplit(base_url)
    origin = f"{parts.scheme}://{parts.netloc}"
    driver.execute_cdp_cmd(
        "Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "local_storage"}
    )
    driver.get(graphiql_url(base_url, query))
    wait: WebDriverWait[WebDriver] = WebDriverWait(driver, timeout, poll_frequency=0.05)
    try:
        wait.until(lambda d: _editor_value(d, QUERY_EDITOR) == query)
    except TimeoutException as exc:
        raise TimeoutException(
            f"GraphiQL did not render {query!r} within {timeout}s at {driver.current_url}; "
            f"console: {console_messages(driver)}"
        ) from exc

    button = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, EXECUTE_BUTTON))
    button.click()

    def has_json_result(d: WebDriver) -> str | bool:
        text = result_text(d).strip()
        return text if text and _is_json(text) else False

    try:
        text = wait.until(has_json_result)
    except TimeoutException as exc:
        raise TimeoutException(
            f"no JSON result within {timeout}s; result pane: {result_text(driver)!r}; "
            f"console: {console_messages(driver)}"
        ) from exc
    assert isinstance(text, str)
    return text


def _drain_log(driver: WebDriver, log_type: str) -> list[dict[str, Any]]:
    try:
        entries = driver.execute(Command.GET_LOG, {"type": log_type})["value"]
    except WebDriverException:
        return []
    return [entry for entry in entries if isinstance(entry, dict)]


def _network_events(driver: WebDriver) -> list[tuple[str, dict[str, Any]]]:
    """(method, params) of every Network event in the performance log so far (reading the log
    empties it, so what was read is kept)."""
    seen = _seen_events.setdefault(driver, [])
    for entry in _drain_log(driver, "performance"):
        try:
            message = json.loads(entry["message"])["message"]
            method, params = message["method"], message["params"]
        except (KeyError, TypeError, ValueError):
            continue
        if isinstance(method, str) and method.startswith("Network.") and isinstance(params, dict):
            seen.append((method, params))
    return list(seen)


def requested_urls(driver: WebDriver) -> list[str]:
    """URLs of every request the browser made since :func:`headless_chromium` started it.

    Taken from Chrome's performance log (``Network.requestWillBeSent`` and
    ``Network.webSocketCreated``), so it includes failed and blocked requests.
    URLs that never leave the browser (``data:``, ``blob:``, ``about:``, ``chrome:``...)
    are left out.
    """
    urls = []
    for method, params in _network_events(driver):
        if method == "Network.requestWillBeSent":
            url = params.get("request", {}).get("url")
        elif method == "Network.webSocketCreated":
            url = params.get("url")
        else:
            continue
        if isinstance(url, str) and urlsplit(url).scheme not in _LOCAL_SCHEMES:
            urls.append(url)
    return urls


def response_statuses(driver: WebDriver, url: str) -> list[int]:
    """The HTTP status of every response the browser received for ``url``, as the network saw
    it: also for ``no-cors`` requests, whose status a page's script cannot read, and for those
    Chromium then blocked (an image that was JSON: ``Network.responseReceived`` never comes)."""
    events = _network_events(driver)
    ids = {
        params["requestId"]
        for method, params in events
        if method == "Network.requestWillBeSent" and params.get("request", {}).get("url") == url
    }
    return [
        int(params["statusCode"])
        for method, params in events
        if method == "Network.responseReceivedExtraInfo" and params.get("requestId") in ids
    ]


def websocket_handshakes(driver: WebDriver, url: str) -> list[int]:
    """The HTTP status each WebSocket handshake to ``url`` got: 101, or the refusal's status
    (Chromium reports a refused handshake only as a frame error naming the code)."""
    events = _network_events(driver)
    ids = {
        params["requestId"]
        for method, params in events
        if method == "Network.webSocketCreated" and params.get("url") == url
    }
    statuses = []
    for method, params in events:
        if params.get("requestId") not in ids:
            continue
        if method == "Network.webSocketHandshakeResponseReceived":
            statuses.append(int(params["response"]["status"]))
        elif method == "Network.webSocketFrameError" and (
            refused := re.search(r"Unexpected response code: (\d+)", params["errorMessage"])
        ):
            statuses.append(int(refused.group(1)))
    return statuses


def console_messages(driver: WebDriver) -> list[str]:
    """Browser console messages (``LEVEL: text``) since :func:`headless_chromium` started it."""
    seen = _seen_console.setdefault(driver, [])
    for entry in _drain_log(driver, "browser"):
        seen.append(f"{entry.get('level', '?')}: {entry.get('message', '')}")
    return list(seen)
