// OIDC sign-in: the authorization-code flow with PKCE (S256) for a public client. The code
// comes back in /ui's query string, is exchanged at the issuer's token endpoint at once and
// removed from the address bar; the token then lives in sessionStorage like a pasted one.

const PENDING = "slurm-graphql-oidc";

function base64url(bytes) {
  let text = "";
  for (const byte of new Uint8Array(bytes)) text += String.fromCharCode(byte);
  return btoa(text).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
}

function random() {
  return base64url(crypto.getRandomValues(new Uint8Array(32)));
}

async function discover(issuer) {
  const response = await fetch(issuer.replace(/\/$/, "") + "/.well-known/openid-configuration", { credentials: "omit" });
  if (!response.ok) throw new Error(`discovery failed (${response.status})`);
  return response.json();
}

function redirectUri() {
  return location.origin + location.pathname;
}

// Leave for the issuer's login page.
export async function signIn(oidc) {
  const meta = await discover(oidc.issuer);
  const verifier = random();
  const state = random();
  const challenge = base64url(await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier)));
  sessionStorage.setItem(PENDING, JSON.stringify({ verifier, state, view: location.hash }));
  const url = new URL(meta.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: "code",
    client_id: oidc.clientId,
    redirect_uri: redirectUri(),
    scope: "openid",
    state,
    code_challenge: challenge,
    code_challenge_method: "S256",
  }).toString();
  location.assign(url.href);
}

// Back from the issuer: the token for the code in the URL (null when the URL carries none).
export async function completeSignIn(oidc) {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return null;
  const pending = JSON.parse(sessionStorage.getItem(PENDING) || "null");
  sessionStorage.removeItem(PENDING);
  // The code must never stay in the address bar, history or a bookmark.
  history.replaceState(null, "", redirectUri() + ((pending && pending.view) || "#/overview"));
  if (params.has("error")) throw new Error(`sign-in refused: ${params.get("error")}`);
  if (!pending || params.get("state") !== pending.state) throw new Error("sign-in state mismatch");
  const meta = await discover(oidc.issuer);
  const response = await fetch(meta.token_endpoint, {
    method: "POST",
    credentials: "omit",
    headers: { "Content-Type": "application/x-www-form-urlencoded" },
    body: new URLSearchParams({
      grant_type: "authorization_code",
      code: params.get("code"),
      redirect_uri: redirectUri(),
      client_id: oidc.clientId,
      code_verifier: pending.verifier,
    }).toString(),
  });
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(`token exchange failed: ${body.error || response.status}`);
  // The ID token's audience is the client id, as the API's JWT check expects.
  return body.id_token || body.access_token;
}
