// Starts GraphiQL on the page server/graphiql.py renders. A file, not an inline <script>, so
// the page's Content-Security-Policy allows scripts from this server only ('self').
(function () {
  "use strict";
  var root = document.getElementById("graphiql");
  var endpoint = root.getAttribute("data-endpoint");
  var params = new URLSearchParams(window.location.search);
  // Subscriptions go over a WebSocket (graphql-transport-ws) to the same endpoint.
  var ws = (location.protocol === "https:" ? "wss://" : "ws://") + location.host;
  var props = {
    fetcher: GraphiQL.createFetcher({ url: endpoint, subscriptionUrl: ws + endpoint }),
    isHeadersEditorEnabled: true,
    defaultEditorToolsVisibility: "headers"
  };
  // ?query=...&variables=... preload the editors (shared links, browser tests).
  if (params.has("query")) { props.query = params.get("query"); }
  if (params.has("variables")) { props.variables = params.get("variables"); }
  ReactDOM.createRoot(root).render(React.createElement(GraphiQL, props));
})();
