// The dashboard's entry: the token form, the connection banner, and a hash router over the
// views (#/overview, #/jobs, #/job/<id>, #/submit). Nothing about the user goes in a URL.

import { getToken, setToken } from "./auth.js";
import { errorBox, fill, h } from "./dom.js";
import { VIEWER } from "./documents.js";
import { request, requestPartial } from "./graphql.js";
import { LiveClient } from "./live.js";
import { completeSignIn, signIn } from "./oidc.js";
import * as job from "./job.js";
import * as jobs from "./jobs.js";
import * as overview from "./overview.js";
import * as submit from "./submit.js";

const config = JSON.parse(document.body.dataset.config || "{}");
const endpoint = config.endpoint || "/graphql";
const main = document.getElementById("main");
const banner = document.getElementById("banner");
const authForm = document.getElementById("auth");

function socketUrl(path) {
  const url = new URL(path, location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  return url.href;
}

let current = null;
let everUp = false;

const live = new LiveClient(
  socketUrl(endpoint),
  () => (getToken() ? { Authorization: "Bearer " + getToken() } : {}),
  (up, detail) => {
    if (up) {
      banner.hidden = true;
      fill(banner);
      // Events missed while the connection was down: the view asks again once.
      if (everUp && current) current.refresh();
      everUp = true;
    } else {
      fill(banner, "Live updates lost (", detail, "); reconnecting…");
      banner.hidden = false;
    }
  },
);

const ctx = {
  main,
  live,
  api: (query, variables) => request(endpoint, query, variables),
  apiPartial: (query, variables) => requestPartial(endpoint, query, variables),
  hasToken: () => Boolean(getToken()),
  liveError: (errors) => {
    const first = (Array.isArray(errors) && errors[0]) || {};
    const code = (first.extensions && first.extensions.code) || "SUBSCRIPTION_ERROR";
    fill(banner, errorBox({ code, message: first.message || "subscription refused" }));
    banner.hidden = false;
  },
};

function route(event) {
  if (current) current.dispose();
  current = null;
  if (config.auth !== "none" && !getToken()) {
    // The API wants a token for every request: ask for one rather than collect 401s.
    fill(main, h("p", { class: "hint" }, "Paste a bearer token above to start."));
    return;
  }
  const [, view = "overview", ...rest] = location.hash.replace(/^#/, "").split("/");
  const arg = decodeURIComponent(rest.join("/"));
  if (view === "jobs") current = jobs.mount(ctx);
  else if (view === "job" && arg) current = job.mount(ctx, arg);
  else if (view === "submit") current = submit.mount(ctx);
  else current = overview.mount(ctx);
  for (const link of document.querySelectorAll("nav a")) {
    if (link.getAttribute("href") === `#/${view}`) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  // A keyboard user who followed a link goes on from the top of the new view, not from a link
  // that is gone (focus would fall back to the page's start).
  if (event && event.type === "hashchange") main.focus({ preventScroll: true });
}

function renderAuth() {
  if (config.auth === "none") {
    fill(authForm, h("span", { class: "who" }, "anonymous, read-only"));
    return;
  }
  const input = h("input", { type: "password", name: "token", placeholder: "bearer token", "aria-label": "Bearer token", autocomplete: "off" });
  const who = h("span", { class: "who", "aria-live": "polite" });
  const oidc = config.oidc
    ? h("button", { type: "button", "data-action": "sign-in", onclick: () => signIn(config.oidc).catch(showFailure) }, "Sign in")
    : null;
  fill(authForm, oidc, input, h("button", { type: "submit" }, "Use token"),
    h("button", { type: "button", onclick: () => changeToken("") }, "Forget"), who);
  if (!getToken()) {
    fill(who, "not signed in");
    return;
  }
  request(endpoint, VIEWER).then(
    (data) => fill(who, data.viewer.authenticated ? `signed in as ${data.viewer.user}` : "not signed in"),
    (error) => fill(who, errorBox(error)),
  );
}

function changeToken(token) {
  setToken(token);
  renderAuth(); // replaces the form, and the focus in it: the keyboard goes on from the view
  live.restart();
  route();
  main.focus({ preventScroll: true });
}

authForm.addEventListener("submit", (event) => {
  event.preventDefault();
  const value = String(new FormData(authForm).get("token") || "").trim();
  changeToken(value);
});

function showFailure(error) {
  fill(banner, errorBox({ code: "SIGN_IN_FAILED", message: error.message || String(error) }));
  banner.hidden = false;
}

async function start() {
  if (config.oidc) {
    try {
      const token = await completeSignIn(config.oidc);
      if (token) setToken(token);
    } catch (error) {
      showFailure(error);
    }
  }
  window.addEventListener("hashchange", route);
  renderAuth();
  route();
}

start();
