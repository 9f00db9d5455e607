"""The GraphiQL IDE page, served from vendored assets.

Slurm clusters often live on air-gapped HPC networks that cannot reach a CDN, so
GraphiQL, React and ReactDOM are not loaded from unpkg/jsdelivr: their UMD builds are
vendored into ``server/static/graphiql/`` by ``scripts/vendor-graphiql`` (pinned
versions, sha256 in ``server/static/graphiql/VERSIONS``) and served by this server.
The bundle includes graphql-js and embeds its fonts, so the page makes no request
outside the server that served it.

The page holds no inline script or style: its own start-up code and layout are files in
``server/static/page/``, so its Content-Security-Policy (``GRAPHIQL_CSP``) lets the page run
and load only what this server serves, and no other site frame it.

``render_graphiql`` only builds a string; serving the static directories and the page is
up to the caller.
"""

from __future__ import annotations

import html

__all__ = ["GRAPHIQL_CSP", "render_graphiql"]

# 'self' covers ws:// and wss:// to this server (CSP 3), which GraphiQL's subscriptions use.
# Fonts and the favicon are data: URLs; nothing is inline, nothing is eval'd.
GRAPHIQL_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "font-src 'self' data:; connect-src 'self'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)

_PAGE = """\
<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>slurm-graphql</title>
    <link rel="icon" href="data:,">
    <link rel="stylesheet" href="{page}/graphiql.css">
    <link rel="stylesheet" href="{prefix}/graphiql.min.css">
    <script src="{prefix}/react.production.min.js"></script>
    <script src="{prefix}/react-dom.production.min.js"></script>
    <script src="{prefix}/graphiql.min.js"></script>
    <script src="{page}/graphiql.js" defer></script>
  </head>
  <body>
    <div id="graphiql" data-endpoint="{endpoint}">Loading GraphiQL&hellip;</div>
  </body>
</html>
"""


def render_graphiql(endpoint: str, static_prefix: str, page_prefix: str) -> str:
    """Return the complete GraphiQL HTML page.

    ``endpoint`` is the URL the fetcher POSTs JSON GraphQL requests to (e.g.
    ``"/graphql"``). ``static_prefix`` is the URL under which the files of
    ``server/static/graphiql/`` are served (e.g. ``"/static/graphiql"``), ``page_prefix``
    the one of ``server/static/page/``; a trailing slash is ignored. A ``?query=`` (and
    ``?variables=``) parameter in the page URL preloads the editor.
    """
    return _PAGE.format(
        prefix=html.escape(static_prefix.rstrip("/"), quote=True),
        page=html.escape(page_prefix.rstrip("/"), quote=True),
        endpoint=html.escape(endpoint, quote=True),
    )
