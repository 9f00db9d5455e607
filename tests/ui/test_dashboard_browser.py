"""The dashboard at /ui in Debian's headless Chromium, over a real `slurm-graphql serve` and the
real local cluster: one browser and one server for the module (tokens for alice and bob, job
visibility `own`, polling every 0.5 s)."""

from __future__ import annotations

import shlex
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from selenium.common.exceptions import NoSuchElementException, StaleElementReferenceException
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.wait import WebDriverWait

from tests.conftest import TOKENS
from tests.support.browser import (
    WebDriver,
    chromium_available,
    console_messages,
    headless_chromium,
    requested_urls,
)
from tests.support.oidc import AUDIENCE, oidc_issuer
from tests.support.scenario import (
    DRAIN_REASON,
    DRAINED_NODE,
    Scenario,
    sbatch,
    slurm,
    wait_for_state,
)
from tests.support.server import free_port, running_process, running_server

pytestmark = [pytest.mark.browser, pytest.mark.cluster]

POLL = 0.5
# HTML, a script, an event handler, RTL overrides and bulk: all of it must show as text.
HOSTILE = (
    "<img src=x onerror=\"window.__pwned='img'\">"
    "<script>window.__pwned='script'</script>\u202e\u200fevil"
)


@dataclass
class Dashboard:
    base_url: str
    driver: WebDriver

    def open(self, view: str, token: str) -> None:
        """Load /ui#/<view> with `token` pasted in the header's form (kept in sessionStorage)."""
        self.driver.get(f"{self.base_url}/ui#/{view}")
        self.wait().until(lambda d: d.find_elements(By.NAME, "token"))
        current = self.driver.execute_script(
            "return sessionStorage.getItem('slurm-graphql-token');"
        )
        if current != token:
            box = self.driver.find_element(By.NAME, "token")
            box.clear()
            box.send_keys(token)
            self.driver.find_element(By.CSS_SELECTOR, "#auth button[type=submit]").click()
        self.wait().until(lambda d: "signed in as" in d.find_element(By.ID, "auth").text)

    def wait(self, seconds: float = 15) -> WebDriverWait[WebDriver]:
        """Polls a condition; an element gone stale meanwhile (a re-render, or the page that
        navigated away for an OIDC sign-in) means "not yet", not a failure."""
        stale = [StaleElementReferenceException, NoSuchElementException]
        return WebDriverWait(self.driver, seconds, poll_frequency=0.05, ignored_exceptions=stale)

    def click(self, selector: str) -> None:
        """Click what `selector` finds once it stays put for the click: live updates re-render
        the view, and an element found just before a re-render is stale when clicked."""

        def clicked(driver: WebDriver) -> bool:
            driver.find_element(By.CSS_SELECTOR, selector).click()
            return True

        stale = [StaleElementReferenceException, NoSuchElementException]
        WebDriverWait(self.driver, 15, 0.05, ignored_exceptions=stale).until(clicked)

    def texts(self, selector: str) -> list[str]:
        """The text of everything `selector` finds, read in one script (no re-render between)."""
        found: list[str] = self.driver.execute_script(
            "return [...document.querySelectorAll(arguments[0])].map(e => e.textContent);",
            selector,
        )
        return found

    def loaded(self, selector: str) -> None:
        self.wait().until(
            lambda d: d.execute_script(
                "const e = document.querySelector(arguments[0]); return e && e.dataset.loaded;",
                selector,
            )
        )


@pytest.fixture(scope="module")
def dashboard(scenario: Scenario, unix_users: None) -> Iterator[Dashboard]:
    if not chromium_available():
        pytest.skip("needs chromium and chromium-driver")
    environ = {
        "SLURM_GRAPHQL_UI": "true",
        "SLURM_GRAPHQL_TOKENS": TOKENS,
        "SLURM_GRAPHQL_ALLOWED_HOSTS": "127.0.0.1",
        "SLURM_GRAPHQL_JOB_VISIBILITY": "own",
        "SLURM_GRAPHQL_POLL_INTERVAL": str(POLL),
        "SLURM_GRAPHQL_CACHE_TTL": "0",
    }
    with running_server(environ) as base_url, headless_chromium() as driver:
        yield Dashboard(base_url, driver)


def test_overview_shows_the_real_nodes_offline_under_its_csp(dashboard: Dashboard) -> None:
    """The overview lists every node sinfo knows, in a heat map with state and CPUs as text, and
    the drained node with its reason; the page asked nothing of any other origin and the console
    shows no CSP violation or script error."""
    dashboard.open("overview", "alice-token")
    dashboard.loaded(".overview")
    names = set(slurm("sinfo", "--noheader", "--Node", "--format=%N").split())
    cells = dashboard.driver.find_elements(By.CSS_SELECTOR, ".heatmap .node")
    shown = {cell.get_attribute("data-node") for cell in cells}
    assert shown == names
    drained = dashboard.driver.find_element(
        By.CSS_SELECTOR, f'.heatmap [data-node="{DRAINED_NODE}"]'
    )
    assert "DRAIN" in drained.text and "CPUs" in drained.text
    row = dashboard.driver.find_element(By.CSS_SELECTOR, f'.reasons tr[data-node="{DRAINED_NODE}"]')
    assert DRAIN_REASON in row.text
    urls = requested_urls(dashboard.driver)
    assert urls and all(
        u.startswith(dashboard.base_url) or u.startswith(dashboard.base_url.replace("http", "ws"))
        for u in urls
    ), urls
    console = console_messages(dashboard.driver)
    errors = [m for m in console if m.startswith("SEVERE") or "Content Security Policy" in m]
    assert not errors, errors


def test_a_job_submitted_with_sbatch_appears_live_and_turns_completed(
    dashboard: Dashboard,
) -> None:
    """With the job table open, alice's sbatch job shows up within the poll interval + 1 s and
    its row turns COMPLETED, without a reload."""
    dashboard.open("jobs", "alice-token")
    dashboard.loaded(".table")
    marker = dashboard.driver.execute_script("return (window.__marker = Math.random());")
    job_id = sbatch("--job-name=ui-live", "--wrap=sleep 1", user="alice")
    started = time.monotonic()
    row = f'tr[data-job="{job_id}"]'
    dashboard.wait(POLL + 1 + 1).until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
    appeared = time.monotonic() - started
    assert appeared <= POLL + 1, appeared
    state = "const r = document.querySelector(arguments[0]); return r && r.dataset.state;"
    dashboard.wait(60).until(lambda d: d.execute_script(state, row) == "COMPLETED")
    assert dashboard.driver.execute_script("return window.__marker;") == marker  # no reload


def test_the_cancel_button_cancels(dashboard: Dashboard) -> None:
    """On her running job's page alice clicks Cancel; Slurm then has the job CANCELLED."""
    job_id = sbatch("--job-name=ui-cancel", "--wrap=sleep 300", user="alice")
    try:
        dashboard.open(f"job/{job_id}", "alice-token")
        dashboard.loaded(".job")
        dashboard.click('button[data-action="cancel"]')
        wait_for_state(job_id, "CANCELLED", timeout=15)
        badge = "const b = document.querySelector('.job h1 .badge'); return b && b.textContent;"
        dashboard.wait().until(lambda d: d.execute_script(badge) == "CANCELLED")
    finally:
        slurm("scancel", job_id)


def test_bob_never_sees_alices_jobs(dashboard: Dashboard, scenario: Scenario) -> None:
    """Under visibility `own`, bob's table lists none of alice's jobs, and her job's page is
    "no such job" for him, with no Cancel button."""
    alices = sbatch("--job-name=ui-alice", "--wrap=sleep 120", user="alice")
    try:
        dashboard.open("jobs", "bob-token")
        dashboard.loaded(".table")
        users = dashboard.texts("table.jobs tbody td:nth-child(3)")
        assert set(users) <= {"bob"}, users
        assert not dashboard.driver.find_elements(By.CSS_SELECTOR, f'tr[data-job="{alices}"]')
        dashboard.open(f"job/{alices}", "bob-token")
        dashboard.wait().until(
            lambda d: "No such job" in d.find_element(By.CSS_SELECTOR, ".job").text
        )
        assert not dashboard.driver.find_elements(By.CSS_SELECTOR, "button[data-action]")
    finally:
        slurm("scancel", alices)


def test_hostile_names_comments_outputs_and_reasons_render_as_text(
    dashboard: Dashboard,
) -> None:
    """A job name, a comment (Slurm refuses comments over ~1 KB), 10 KB of job output and a drain
    reason made of HTML, script tags and RTL marks show as the literal text; no injected script
    or handler runs."""
    comment = HOSTILE + "x" * 800
    bulk = (HOSTILE * 120)[:10_000]
    # alice writes it: a directory of hers, not pytest's (its parents are root's, mode 0700).
    folder = Path(tempfile.mkdtemp(prefix="ui-hostile-"))
    folder.chmod(0o777)
    output = folder / "hostile.out"
    script = f"--wrap=printf '%s' {shlex.quote(bulk)}"
    job_id = sbatch(
        f"--job-name={HOSTILE}", f"--comment={comment}", f"--output={output}", script, user="alice"
    )
    slurm("scontrol", "update", f"nodename={DRAINED_NODE}", f"reason={HOSTILE}")
    try:
        wait_for_state(job_id, "COMPLETED")
        dashboard.open(f"job/{job_id}", "alice-token")
        dashboard.loaded(".job")
        text = "const e = document.querySelector(arguments[0]); return e && e.textContent;"
        assert dashboard.driver.execute_script(text, "[data-field=Comment]") == comment
        assert dashboard.driver.execute_script(text, "[data-field=Name]") == HOSTILE
        assert dashboard.driver.execute_script(text, "pre.output") == bulk
        dashboard.open("overview", "alice-token")
        dashboard.wait().until(
            lambda d: (
                d.execute_script(text, f'.reasons tr[data-node="{DRAINED_NODE}"] .reason')
                == HOSTILE
            )
        )
        dashboard.open("jobs", "alice-token")
        dashboard.loaded(".table")
        assert not dashboard.driver.find_elements(By.CSS_SELECTOR, "main img, main script")
        assert dashboard.driver.execute_script("return window.__pwned;") is None
    finally:
        slurm("scontrol", "update", f"nodename={DRAINED_NODE}", f"reason={DRAIN_REASON}")
        slurm("scancel", job_id)
        shutil.rmtree(folder, ignore_errors=True)


def test_a_refused_submission_shows_next_to_its_field(dashboard: Dashboard) -> None:
    """The submit form sends a script without #!; the SubmitRejected code and message appear
    under the script field, which is marked invalid."""
    dashboard.open("submit", "alice-token")
    dashboard.wait().until(lambda d: d.find_elements(By.ID, "submit-script"))
    script = dashboard.driver.find_element(By.ID, "submit-script")
    script.clear()
    script.send_keys("echo no interpreter line")
    dashboard.driver.find_element(By.CSS_SELECTOR, "form.submit button[type=submit]").click()
    error = dashboard.driver.find_element(By.ID, "submit-script-error")
    dashboard.wait().until(lambda d: "INVALID_INPUT" in error.text)
    assert "#!" in error.text
    assert script.get_attribute("aria-invalid") == "true"


def test_a_lost_connection_shows_a_banner_and_resumes(dashboard: Dashboard) -> None:
    """The server behind an open job table goes away: a banner says live updates are lost; the
    server comes back on the same port: the banner goes and the table asks again, no reload."""
    port = free_port()
    base_url = f"http://127.0.0.1:{port}"
    argv = [sys.executable, "-m", "server.cli", "serve", "--host", "127.0.0.1", "--port", str(port)]
    environ = {"SLURM_GRAPHQL_UI": "true", "SLURM_GRAPHQL_POLL_INTERVAL": str(POLL)}
    driver = dashboard.driver
    banner = "const b = document.getElementById('banner'); return b.hidden ? '' : b.textContent;"
    loaded = "return document.querySelector('.table').dataset.loaded;"
    with running_process(argv, f"{base_url}/healthz", environ):
        driver.get(f"{base_url}/ui#/jobs")
        dashboard.loaded(".table")
        driver.execute_script("window.__marker = 1;")
    dashboard.wait(20).until(lambda d: "Live updates lost" in d.execute_script(banner))
    before = driver.execute_script(loaded)
    with running_process(argv, f"{base_url}/healthz", environ):
        dashboard.wait(30).until(lambda d: d.execute_script(banner) == "")
        dashboard.wait().until(lambda d: d.execute_script(loaded) != before)
    assert driver.execute_script("return window.__marker;") == 1


def test_oidc_sign_in_with_pkce_keeps_codes_and_tokens_out_of_urls(dashboard: Dashboard) -> None:
    """With SLURM_GRAPHQL_AUTH=jwt and a UI client id, "Sign in" goes to the issuer with an S256
    challenge, comes back with a code, exchanges it (the issuer checks the verifier) and the
    page acts as alice; no URL the browser visited after the exchange holds the code or token."""
    driver = dashboard.driver
    with oidc_issuer() as issuer:
        environ = issuer.environ(
            SLURM_GRAPHQL_UI="true",
            SLURM_GRAPHQL_UI_OIDC_CLIENT_ID=AUDIENCE,
            SLURM_GRAPHQL_ALLOWED_HOSTS="127.0.0.1",
        )
        with running_server(environ) as base_url:
            driver.get(f"{base_url}/ui#/jobs")
            driver.execute_script("sessionStorage.clear();")
            driver.get(f"{base_url}/ui#/jobs")
            dashboard.wait().until(
                lambda d: d.find_elements(By.CSS_SELECTOR, 'button[data-action="sign-in"]')
            )
            dashboard.click('button[data-action="sign-in"]')
            dashboard.wait().until(
                lambda d: "signed in as alice" in d.find_element(By.ID, "auth").text
            )
            dashboard.loaded(".table")
            assert driver.current_url == f"{base_url}/ui#/jobs"
            token = driver.execute_script("return sessionStorage.getItem('slurm-graphql-token');")
            assert token and token not in driver.current_url
            assert issuer.refused_exchanges == 0 and not issuer.codes


def test_hold_and_release_buttons(dashboard: Dashboard) -> None:
    """On her pending job's page alice clicks Hold (Slurm then holds it by user), then Release
    (no longer held)."""
    job_id = sbatch("--job-name=ui-hold", "--begin=now+3600", "--wrap=true", user="alice")
    reason = ("squeue", "--noheader", "--format=%r", f"--jobs={job_id}")
    try:
        dashboard.open(f"job/{job_id}", "alice-token")
        dashboard.loaded(".job")
        dashboard.click('button[data-action="hold"]')
        dashboard.wait().until(lambda _: "done" in " ".join(dashboard.texts(".status")))
        assert "JobHeldUser" in slurm(*reason)
        dashboard.loaded(".job")
        dashboard.click('button[data-action="release"]')
        dashboard.wait().until(lambda _: "release: done" in " ".join(dashboard.texts(".status")))
        assert "JobHeld" not in slurm(*reason)
    finally:
        slurm("scancel", job_id)


def test_a_failed_request_shows_its_code_and_message_as_text(dashboard: Dashboard) -> None:
    """A job page for an id that is no job id (markup, at that) shows the API's error code and
    message, the id inside it as text."""
    dashboard.open("job/<b>x</b>", "alice-token")
    shown = "const e = document.querySelector('.job .error'); return e && e.textContent;"
    dashboard.wait().until(lambda d: d.execute_script(shown))
    text = dashboard.driver.execute_script(shown)
    assert text.startswith("BAD_USER_INPUT ") and "'<b>x</b>' is not a Slurm job id" in text
    assert not dashboard.driver.find_elements(By.CSS_SELECTOR, "main b")


_ACTIVE = """
const e = document.activeElement;
const s = getComputedStyle(e);
const row = e.closest && e.closest("tr");
return {tag: e.tagName, cls: e.className || "", name: e.getAttribute("name"),
        href: e.getAttribute("href"), action: e.dataset ? e.dataset.action || null : null,
        text: (e.textContent || "").trim().slice(0, 40), job: row ? row.dataset.job || null : null,
        outline: s.outlineStyle, width: s.outlineWidth, left: e.getBoundingClientRect().left};
"""


class Keyboard:
    """Drives the page with keys only, and checks each control it reaches shows its focus."""

    def __init__(self, dashboard: Dashboard) -> None:
        self.dashboard = dashboard
        self.visited: list[dict[str, Any]] = []

    def press(self, *keys: str) -> None:
        ActionChains(self.dashboard.driver).send_keys(*keys).perform()

    def active(self) -> dict[str, Any]:
        found: dict[str, Any] = self.dashboard.driver.execute_script(_ACTIVE)
        return found

    def tab_to(self, wanted: Callable[[dict[str, Any]], bool], back: bool = False) -> None:
        """Tab (or Shift+Tab) until the focused element is `wanted`; every element on the way
        must show a focus outline."""
        for _ in range(150):
            if back:
                ActionChains(self.dashboard.driver).key_down(Keys.SHIFT).send_keys(Keys.TAB).key_up(
                    Keys.SHIFT
                ).perform()
            else:
                self.press(Keys.TAB)
            now = self.active()
            self.visited.append(now)
            assert now["tag"] != "BODY", self.visited[-5:]
            assert now["outline"] != "none" and now["width"] != "0px", now
            if wanted(now):
                return
        raise AssertionError(f"never reached: {self.visited[-5:]}")


def test_the_dashboard_works_with_the_keyboard_alone(dashboard: Dashboard) -> None:
    """Keys only: Tab reaches the skip link (shown when focused), the token field (Enter signs
    in), the views' links (Enter opens one), every filter and the jobs' links, and on a job's
    page Space holds and Enter releases it; each control shows a visible focus outline."""
    driver = dashboard.driver
    job_id = sbatch("--job-name=ui-keys", "--begin=now+3600", "--wrap=true", user="alice")
    reason = ("squeue", "--noheader", "--format=%r", f"--jobs={job_id}")
    keys = Keyboard(dashboard)
    try:
        driver.get(f"{dashboard.base_url}/ui#/overview")
        driver.execute_script("sessionStorage.clear();")
        # A new document (not a same-page hash change), so the focus starts at its top.
        driver.get("about:blank")
        driver.get(f"{dashboard.base_url}/ui#/overview")
        dashboard.wait().until(lambda d: d.find_elements(By.NAME, "token"))
        keys.tab_to(lambda e: "skip" in e["cls"])
        assert keys.active()["left"] >= 0  # on screen once focused
        keys.tab_to(lambda e: e["name"] == "token")
        keys.press("alice-token", Keys.ENTER)
        dashboard.wait().until(lambda d: "signed in as alice" in d.find_element(By.ID, "auth").text)
        keys.tab_to(lambda e: e["href"] == "#/jobs", back=True)
        keys.press(Keys.ENTER)
        dashboard.loaded(".table")
        keys.tab_to(lambda e: e["job"] == job_id and e["tag"] == "A")
        reached = {e["name"] for e in keys.visited} | {e["text"] for e in keys.visited}
        assert {"state", "user", "partition", "name", "order", "direction", "Apply"} <= reached
        keys.press(Keys.ENTER)
        dashboard.loaded(".job")
        keys.tab_to(lambda e: e["action"] == "hold")
        keys.press(Keys.SPACE)
        dashboard.wait().until(lambda _: "hold: done" in " ".join(dashboard.texts(".status")))
        assert "JobHeldUser" in slurm(*reason)
        keys.tab_to(lambda e: e["action"] == "release")
        keys.press(Keys.ENTER)
        dashboard.wait().until(lambda _: "release: done" in " ".join(dashboard.texts(".status")))
        assert "JobHeld" not in slurm(*reason)
    finally:
        slurm("scancel", job_id)


def test_a_live_update_keeps_the_focused_row_and_link(dashboard: Dashboard) -> None:
    """With a job's link focused in the table, a job submitted meanwhile appears (a live
    update): the focused link is the same element, still focused, in its job's row, so a key
    press or click under way lands where the user meant."""
    mine = sbatch("--job-name=ui-focus", "--hold", "--wrap=true", user="alice")
    later = ""
    try:
        dashboard.open("jobs", "alice-token")
        dashboard.loaded(".table")
        link = f'tr[data-job="{mine}"] a'
        dashboard.wait().until(lambda d: d.find_elements(By.CSS_SELECTOR, link))
        dashboard.driver.execute_script(
            "const a = document.querySelector(arguments[0]); a.focus(); a.__kept = true;", link
        )
        later = sbatch("--job-name=ui-focus-later", "--hold", "--wrap=true", user="alice")
        row = f'tr[data-job="{later}"]'
        dashboard.wait(POLL + 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
        kept = dashboard.driver.execute_script(
            "const e = document.activeElement; return [e.__kept === true, e.isConnected,"
            " e.closest('tr').dataset.job];"
        )
        assert kept == [True, True, mine]
    finally:
        slurm("scancel", mine, *([later] if later else []))


def test_the_dashboard_runs_under_persisted_only(dashboard: Dashboard) -> None:
    """SLURM_GRAPHQL_PERSISTED_ONLY=true with the dashboard on and no manifest of the
    operator's: every view loads and stays live on the dashboard's shipped documents, while a
    document of the page's own making is PERSISTED_QUERY_NOT_ALLOWED."""
    job_id = sbatch("--job-name=ui-persisted", "--hold", "--wrap=true", user="alice")
    environ = {
        "SLURM_GRAPHQL_UI": "true",
        "SLURM_GRAPHQL_PERSISTED_ONLY": "true",
        "SLURM_GRAPHQL_TOKENS": TOKENS,
        "SLURM_GRAPHQL_ALLOWED_HOSTS": "127.0.0.1",
        "SLURM_GRAPHQL_JOB_VISIBILITY": "own",
        "SLURM_GRAPHQL_POLL_INTERVAL": str(POLL),
        "SLURM_GRAPHQL_CACHE_TTL": "0",
    }
    try:
        with running_server(environ) as base_url:
            strict = Dashboard(base_url, dashboard.driver)
            strict.open("overview", "alice-token")
            strict.loaded(".overview")
            strict.open("jobs", "alice-token")
            strict.loaded(".table")
            assert strict.driver.find_elements(By.CSS_SELECTOR, f'tr[data-job="{job_id}"]')
            later = sbatch("--job-name=ui-persisted-live", "--hold", "--wrap=true", user="alice")
            try:
                row = f'tr[data-job="{later}"]'
                strict.wait(POLL + 10).until(lambda d: d.find_elements(By.CSS_SELECTOR, row))
            finally:
                slurm("scancel", later)
            strict.open(f"job/{job_id}", "alice-token")
            strict.loaded(".job")
            strict.open("submit", "alice-token")
            strict.wait().until(
                lambda d: len(d.find_elements(By.CSS_SELECTOR, "#submit-partition option")) > 1
            )
            assert not strict.driver.find_elements(By.CSS_SELECTOR, "main .error")
            refused = strict.driver.execute_async_script(
                """const done = arguments[arguments.length - 1];
                fetch("/graphql", {method: "POST", headers: {"Content-Type": "application/json",
                  Authorization: "Bearer alice-token"},
                  body: JSON.stringify({query: "{ viewer { user } }"})})
                  .then(r => r.json()).then(b => done(b.errors[0].extensions.code));"""
            )
            assert refused == "PERSISTED_QUERY_NOT_ALLOWED"
    finally:
        slurm("scancel", job_id)
