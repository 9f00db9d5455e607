"""/ui as HTTP sees it: absent unless SLURM_GRAPHQL_UI is on; when on, a shell with no inline
script or style under a strict CSP, and its modules served from the repository."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import httpx

from server.app import create_app
from server.settings import Settings
from server.ui import MODULES


@asynccontextmanager
async def client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    app = create_app(settings)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://localhost"
        ) as http,
    ):
        yield http


async def test_ui_is_off_by_default() -> None:
    """Without SLURM_GRAPHQL_UI neither the page nor its modules are served."""
    assert Settings.from_environ({}).ui is False
    async with client(Settings()) as http:
        assert (await http.get("/ui")).status_code == 404
        assert (await http.get("/ui/static/app.js")).status_code == 404


async def test_ui_page_runs_only_its_own_files() -> None:
    """The shell has no inline script or style; its CSP allows only this server's files and
    connections, forbids framing; the modules it names are served as JavaScript."""
    async with client(Settings.from_environ({"SLURM_GRAPHQL_UI": "true"})) as http:
        page = await http.get("/ui")
        assert page.status_code == 200
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "frame-ancestors 'none'" in csp
        assert "connect-src 'self'" in csp and "unsafe" not in csp
        assert page.headers["x-frame-options"] == "DENY"
        assert page.headers["x-content-type-options"] == "nosniff"
        assert (
            "<script>" not in page.text and "<style" not in page.text and " style=" not in page.text
        )
        assert '<script type="module" src="/ui/static/app.js">' in page.text
        for name in ("app.js", *MODULES):
            module = await http.get(f"/ui/static/{name}")
            assert module.status_code == 200, name
            assert "javascript" in module.headers["content-type"]
        from server.app import UI_DIR

        assert {p.name for p in UI_DIR.glob("*.js")} == {"app.js", *MODULES}


def test_modules_never_put_data_in_markup() -> None:
    """No module of the dashboard uses innerHTML, outerHTML, insertAdjacentHTML,
    document.write or eval: data reaches the DOM as text only."""
    from server.app import UI_DIR

    forbidden = ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval(")
    for module in UI_DIR.glob("*.js"):
        text = module.read_text()
        assert not [word for word in forbidden if word in text], module.name
