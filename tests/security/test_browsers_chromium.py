"""Browsers, for real: GraphiQL works under its Content-Security-Policy, and a page rebound to
the server (DNS rebinding, played by Chromium's resolver rules) cannot make it run anything.
Debian's headless Chromium and a real `slurm-graphql serve` process, as in
tests/server/test_graphiql.py."""

from __future__ import annotations

import contextlib
import http.server
import json
import socket
import sys
import threading
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from selenium.webdriver.common.by import By
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import TOKENS
from tests.support.browser import (
    EXECUTE_BUTTON,
    WebDriver,
    console_messages,
    graphiql_url,
    headless_chromium,
    response_statuses,
    result_text,
    run_query_in_graphiql,
    websocket_handshakes,
)
from tests.support.scenario import Scenario
from tests.support.server import running_process, running_server

pytestmark = [pytest.mark.browser, pytest.mark.cluster]

READ = "{ cluster { name } }"
# GraphiQL 3's headers editor (shown by default; the variables editor is the hidden one).
HEADERS_EDITOR = ".graphiql-editor-tool .graphiql-editor:not(.hidden) .CodeMirror"
# Where the attacker's page is served from, and then the server: the rebound name's address.
REBOUND = "127.0.0.2"
SUBMIT = (
    'mutation { submitJob(input: {script: "#!/bin/sh\\ntrue\\n", name: "rebound"}) { __typename } }'
)

# The attacker's page. attack() runs after the name now points at the API: a same-origin POST
# (its script reads the answer), a cross-site one (no-cors: Chromium sends it as text/plain,
# which the old code refused with 400 after reading it; now 403 before), an image whose URL is a
# query, and a WebSocket of each kind.
ATTACK_PAGE = """<!doctype html><html><body><script>
async function socket(url) {
  return await new Promise(function (resolve) {
    var s = new WebSocket(url, "graphql-transport-ws");
    s.onopen = function () { s.close(); resolve("open"); };
    s.onclose = function () { resolve("refused"); };
  });
}
window.attack = async function (port, query, read, done) {
  var body = JSON.stringify({query: query});
  var out = {};
  try {
    var r = await fetch("/graphql", {method: "POST", body: body,
                                     headers: {"Content-Type": "application/json"}});
    out.rebound = [r.status, await r.text()];
  } catch (e) { out.rebound = [0, String(e)]; }
  try {
    await fetch("http://127.0.0.2:" + port + "/graphql", {method: "POST", mode: "no-cors",
      body: body, headers: {"Content-Type": "application/json"}});
  } catch (e) { out.crossSite = String(e); }
  await new Promise(function (resolve) {
    var image = new Image();
    image.onload = image.onerror = resolve;
    image.src = "http://127.0.0.2:" + port + "/graphql?query=" + encodeURIComponent(read);
  });
  out.reboundSocket = await socket("ws://" + location.host + "/graphql");
  out.crossSiteSocket = await socket("ws://127.0.0.2:" + port + "/graphql");
  done(out);
};
</script></body></html>"""


def test_graphiql_runs_under_its_content_security_policy(
    slurm_cluster: str, scenario: Scenario
) -> None:
    """The page's CSP has no inline script or style and forbids framing; under it GraphiQL runs
    a query and a subscription over its WebSocket with no CSP violation in the console."""
    with running_server() as base_url, headless_chromium() as driver:
        page = httpx.get(f"{base_url}/graphql", headers={"Accept": "text/html"})
        csp = page.headers["content-security-policy"]
        assert "frame-ancestors 'none'" in csp and "script-src 'self'" in csp
        assert "unsafe" not in csp and "<script>" not in page.text and "<style>" not in page.text
        assert page.headers["x-frame-options"] == "DENY"
        query = json.loads(run_query_in_graphiql(driver, base_url, "{ cluster { name } }"))
        assert query["data"]["cluster"]["name"] == "local"
        subscription = (
            f'subscription {{ jobStateChanged(id: "{scenario.failed}") {{ job {{ state }} }} }}'
        )
        event = json.loads(run_query_in_graphiql(driver, base_url, subscription))
        assert event["data"]["jobStateChanged"]["job"]["state"] == "FAILED"
        console = console_messages(driver)
    assert not [line for line in console if "Content Security Policy" in line], console


def subscribe_with_token(driver: WebDriver, base_url: str, query: str, token: str) -> str:
    """Run `query` in GraphiQL with `Authorization: Bearer <token>` typed in its headers editor
    (GraphiQL sends those headers as the WebSocket's connection_init payload); the result pane's
    text once it shows anything."""
    driver.get(graphiql_url(base_url, query))
    wait: WebDriverWait[WebDriver] = WebDriverWait(driver, 20, poll_frequency=0.05)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, HEADERS_EDITOR))
    driver.execute_script(
        "document.querySelector(arguments[0]).CodeMirror.setValue(arguments[1]);",
        HEADERS_EDITOR,
        json.dumps({"Authorization": f"Bearer {token}"}),
    )
    driver.find_element(By.CSS_SELECTOR, EXECUTE_BUTTON).click()
    text: str = wait.until(lambda d: result_text(d).strip())
    return text


@pytest.mark.parametrize(
    ("allowed_hosts", "opens"),
    [("", False), ("127.0.0.1", True)],
    ids=["no-allowed-hosts", "allowed-hosts"],
)
def test_graphiql_subscriptions_with_authentication_need_allowed_hosts(
    slurm_cluster: str, scenario: Scenario, allowed_hosts: str, opens: bool
) -> None:
    """With tokens, GraphiQL's WebSocket is refused (403, before its token is read) unless the
    page's host is in SLURM_GRAPHQL_ALLOWED_HOSTS: its own Host proves nothing. Listed, the
    subscription runs with the token from the headers editor."""
    environ = {"SLURM_GRAPHQL_TOKENS": TOKENS, "SLURM_GRAPHQL_ALLOWED_HOSTS": allowed_hosts}
    query = f'subscription {{ jobStateChanged(id: "{scenario.failed}") {{ job {{ state }} }} }}'
    with running_server(environ) as base_url, headless_chromium() as driver:
        shown = subscribe_with_token(driver, base_url, query, "alice-token")
        socket_url = base_url.replace("http://", "ws://") + "/graphql"
        handshakes = websocket_handshakes(driver, socket_url)
    if opens:
        assert handshakes == [101], handshakes
        assert json.loads(shown)["data"]["jobStateChanged"]["job"]["state"] == "FAILED"
    else:
        assert '"data"' not in shown, shown
        assert handshakes and set(handshakes) == {403}, handshakes


@contextlib.contextmanager
def attacker_site() -> Iterator[int]:
    """The attacker's web server on a free port of the rebound name's address, until the name is
    rebound; yields the port."""

    class Page(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = ATTACK_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    # Chromium opens spare connections ahead of need; once the name is rebound, none of them
    # may still lead to the attacker's server, so each is remembered and shut at the end.
    connections: list[socket.socket] = []

    class Site(http.server.ThreadingHTTPServer):
        def get_request(self) -> tuple[socket.socket, Any]:
            connection, address = super().get_request()
            connections.append(connection)
            return connection, address

    server = Site((REBOUND, 0), Page)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


def test_a_rebound_page_cannot_submit(slurm_cluster: str) -> None:
    """A page from http://r.example:PORT, whose name then points at an anonymous server on that
    port: its same-origin POST gets 421, its cross-site POST and GET query 403, neither WebSocket
    opens."""
    with headless_chromium(f"--host-resolver-rules=MAP r.example {REBOUND}") as driver:
        with attacker_site() as port:
            driver.get(f"http://r.example:{port}/")
        argv = [sys.executable, "-m", "server.cli", "serve", "--host", REBOUND, "--port", str(port)]
        with running_process(argv, f"http://{REBOUND}:{port}/healthz", None):
            driver.set_script_timeout(20)
            out = driver.execute_async_script(
                "window.attack(arguments[0], arguments[1], arguments[2], arguments[3]);",
                port,
                SUBMIT,
                READ,
            )
            cross_site = response_statuses(driver, f"http://{REBOUND}:{port}/graphql")
            image = response_statuses(
                driver, f"http://{REBOUND}:{port}/graphql?query={quote(READ)}"
            )
    assert out["rebound"][0] == 421, out
    assert "HOST_NOT_ALLOWED" in out["rebound"][1]
    assert cross_site == [403], (cross_site, out)
    assert image == [403], (image, out)
    assert (out["reboundSocket"], out["crossSiteSocket"]) == ("refused", "refused")
