// Building DOM from data without ever parsing data as markup: every string becomes a text node
// or an attribute value, so a job named "<script>…" is shown, never run.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (key.startsWith("on")) el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of [children].flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

// Replace everything under `el` with `children`.
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

export function jobHref(displayId) {
  return "#/job/" + encodeURIComponent(displayId);
}

export function when(iso) {
  if (!iso) return "";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

export function minutes(value) {
  if (value === null || value === undefined) return "unlimited";
  const h = Math.floor(value / 60);
  const m = value % 60;
  return h ? `${h} h ${String(m).padStart(2, "0")} min` : `${m} min`;
}

export function errorBox(error) {
  // A failed request shows its code and message, as text.
  const code = (error && error.code) || "ERROR";
  const message = (error && error.message) || String(error);
  return h("p", { class: "error", role: "alert" }, h("code", {}, code), " ", message);
}

// Run `fn` at most once per `ms`, after the last call (several events, one refetch).
export function debounce(fn, ms) {
  let timer = null;
  const call = () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      timer = null;
      fn();
    }, ms);
  };
  call.cancel = () => clearTimeout(timer);
  return call;
}
