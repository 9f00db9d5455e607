// The bearer token the user pasted: in sessionStorage (gone with the tab), never in a URL.

const KEY = "slurm-graphql-token";

export function getToken() {
  try {
    return sessionStorage.getItem(KEY) || "";
  } catch {
    return memory;
  }
}

let memory = "";

export function setToken(token) {
  memory = token;
  try {
    if (token) sessionStorage.setItem(KEY, token);
    else sessionStorage.removeItem(KEY);
  } catch {
    // Storage refused (private mode, policy): the token lives in memory for this page only.
  }
}

export function authHeaders() {
  const token = getToken();
  return token ? { Authorization: "Bearer " + token } : {};
}
