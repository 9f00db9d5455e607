"""The reference dashboard at /ui: plain ES modules and CSS from ``server/static/ui/``.

No CDN, no build step, nothing vendored: the page is this HTML shell plus the modules the
browser loads from this server. The shell holds no inline script or style, so its
Content-Security-Policy (``UI_CSP``) lets the page run only files served here, talk only
to this server (``connect-src 'self'`` covers its own ws:// and wss://), and no other site
frame it. Every piece of data the modules show goes into the DOM as text (``textContent``),
never as markup.

The dashboard is off unless ``SLURM_GRAPHQL_UI=true`` (``make run`` turns it on): a
production API serves frontends of its own and should not carry a second one by default.
"""

from __future__ import annotations

import html
import json
from urllib.parse import urlsplit

__all__ = ["MODULES", "UI_CSP", "render_ui", "ui_csp"]

# What app.js imports, named in the shell so the browser fetches them all at once rather than
# one level of imports after another (a shorter way to the first data).
MODULES = (
    "auth.js",
    "documents.js",
    "dom.js",
    "graphql.js",
    "live.js",
    "oidc.js",
    "overview.js",
    "jobs.js",
    "job.js",
    "submit.js",
)

UI_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


def ui_csp(oidc_issuer: str | None = None) -> str:
    """UI_CSP; with an OIDC issuer, its origin is added to connect-src (the page reads the
    issuer's discovery document and exchanges the authorization code there) and nothing else."""
    if not oidc_issuer:
        return UI_CSP
    parts = urlsplit(oidc_issuer)
    origin = f"{parts.scheme}://{parts.netloc}"
    return UI_CSP.replace("connect-src 'self'", f"connect-src 'self' {origin}")


_PAGE = """\
<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>slurm-graphql dashboard</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="{prefix}/ui.css">
{preloads}
    <script type="module" src="{prefix}/app.js"></script>
  </head>
  <body data-config="{config}">
    <a class="skip" href="#main">Skip to content</a>
    <header>
      <strong>slurm-graphql</strong>
      <nav aria-label="Views">
        <a href="#/overview">Overview</a>
        <a href="#/jobs">Jobs</a>
        <a href="#/submit">Submit</a>
      </nav>
      <form id="auth" autocomplete="off"></form>
    </header>
    <div id="banner" role="alert" hidden></div>
    <main id="main" tabindex="-1">Loading&hellip;</main>
  </body>
</html>
"""


def render_ui(
    static_prefix: str,
    endpoint: str = "/graphql",
    auth_mode: str = "none",
    oidc: tuple[str, str] | None = None,
) -> str:
    """The dashboard's HTML shell; its modules are served under ``static_prefix``.

    ``endpoint`` is where the modules send GraphQL over HTTP and open their WebSocket;
    ``auth_mode`` (Settings.auth_mode) tells them whether to offer the token field; ``oidc``,
    (issuer URL, client id), adds a sign-in button (authorization code flow with PKCE).
    """
    settings: dict[str, object] = {"endpoint": endpoint, "auth": auth_mode}
    if oidc is not None:
        settings["oidc"] = {"issuer": oidc[0], "clientId": oidc[1]}
    config = json.dumps(settings)
    prefix = html.escape(static_prefix.rstrip("/"), quote=True)
    preloads = "\n".join(
        f'    <link rel="modulepreload" href="{prefix}/{module}">' for module in MODULES
    )
    return _PAGE.format(
        prefix=prefix,
        preloads=preloads,
        config=html.escape(config, quote=True),
    )
