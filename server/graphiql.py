"""The GraphiQL IDE page, served from vendored assets.

Slurm clusters often live on air-gapped HPC networks that cannot reach a CDN, so
GraphiQL, React and ReactDOM are not loaded from unpkg/jsdelivr: their UMD builds are
vendored into ``server/static/graphiql/`` by ``scripts/vendor-graphiql`` (pinned
versions, sha256 in ``server/static/graphiql/VERSIONS``) and served by this server.
The bundle includes graphql-js and embeds its fonts, so the page makes no request
outside the server that served it.

``render_graphiql`` only builds a string; serving the static directory and the page is
up to the caller.
"""

from __future__ import annotations

import html
import json

__all__ = ["render_graphiql"]

_PAGE = """\
<!doctype html>
<html lang="en">
  <head>
    <meta charset="utf-8">
    <meta name="viewport" content="width=device-width, initial-scale=1">
    <title>slurm-graphql</title>
    <link rel="icon" href="data:,">
    <style>
      html, body {{ height: 100%; margin: 0; overflow: hidden; }}
      #graphiql {{ height: 100vh; }}
    </style>
    <link rel="stylesheet" href="{prefix}/graphiql.min.css">
    <script src="{prefix}/react.production.min.js"></script>
    <script src="{prefix}/react-dom.production.min.js"></script>
    <script src="{prefix}/graphiql.min.js"></script>
  </head>
  <body>
    <div id="graphiql">Loading GraphiQL&hellip;</div>
    <script>
      (function () {{
        "use strict";
        var config = {config};
        var params = new URLSearchParams(window.location.search);
        // Subscriptions go over a WebSocket (graphql-transport-ws) to the same endpoint.
        var ws = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
        var props = {{
          fetcher: GraphiQL.createFetcher({{
            url: config.endpoint,
            subscriptionUrl: ws + config.endpoint
          }}),
          isHeadersEditorEnabled: true,
          defaultEditorToolsVisibility: "headers"
        }};
        // ?query=...&variables=... preload the editors (shared links, browser tests).
        if (params.has("query")) {{ props.query = params.get("query"); }}
        if (params.has("variables")) {{ props.variables = params.get("variables"); }}
        ReactDOM.createRoot(document.getElementById("graphiql"))
          .render(React.createElement(GraphiQL, props));
      }})();
    </script>
  </body>
</html>
"""

# JSON is valid JavaScript, but "</script>", "<!--" and U+2028/2029 need care inside a
# <script> element; escaping these keeps the JSON value identical once parsed.
_SCRIPT_ESCAPES = str.maketrans(
    {
        "<": "\\u003c",
        ">": "\\u003e",
        "&": "\\u0026",
        "\u2028": "\\u2028",
        "\u2029": "\\u2029",
    }
)


def _script_json(value: object) -> str:
    """Serialise ``value`` as JSON that is safe to embed in an HTML ``<script>``."""
    return json.dumps(value, ensure_ascii=False).translate(_SCRIPT_ESCAPES)


def render_graphiql(endpoint: str, static_prefix: str) -> str:
    """Return the complete GraphiQL HTML page.

    ``endpoint`` is the URL the fetcher POSTs JSON GraphQL requests to (e.g.
    ``"/graphql"``). ``static_prefix`` is the URL under which the files of
    ``server/static/graphiql/`` are served (e.g. ``"/static/graphiql"``); a trailing
    slash is ignored. A ``?query=`` (and ``?variables=``) parameter in the page URL
    preloads the editor.
    """
    prefix = static_prefix.rstrip("/")
    return _PAGE.format(
        prefix=html.escape(prefix, quote=True),
        config=_script_json({"endpoint": endpoint}),
    )
