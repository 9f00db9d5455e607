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

function keyOf(node) {
  return node.nodeType === Node.ELEMENT_NODE ? node.getAttribute("data-key") : null;
}

function alike(a, b) {
  return a.nodeType === b.nodeType && a.nodeName === b.nodeName && keyOf(a) === keyOf(b);
}

// Make `target` look like `fresh` (the same view built again by h() from newer data) in place:
// text and attributes change where they differ; children are matched by `data-key` (a job's row,
// a node's cell) or else by position and tag; only what has no match is added or removed. So the
// element under the pointer or holding the focus stays the same element through a live update,
// and a click on it is not lost. The listeners of `fresh` are dropped with it: the ones of the
// first render stay, so a view's handlers must read the current state when called.
export function morph(target, fresh) {
  if (target.nodeType !== Node.ELEMENT_NODE) {
    if (target.data !== fresh.data) target.data = fresh.data;
    return;
  }
  for (const name of target.getAttributeNames()) {
    if (!fresh.hasAttribute(name)) target.removeAttribute(name);
  }
  for (const name of fresh.getAttributeNames()) {
    const value = fresh.getAttribute(name);
    if (target.getAttribute(name) !== value) target.setAttribute(name, value);
  }
  morphChildren(target, [...fresh.childNodes]);
}

// morph() for the children of `target`: `wanted` is the list of fresh children.
export function morphChildren(target, wanted) {
  const keyed = new Map();
  for (const child of target.childNodes) {
    const key = keyOf(child);
    if (key !== null) keyed.set(key, child);
  }
  let cursor = target.firstChild; // everything before it is in place
  for (const next of wanted) {
    const key = keyOf(next);
    let match = null;
    if (key !== null) match = keyed.get(key) || null;
    else if (cursor && alike(cursor, next)) match = cursor;
    if (match && alike(match, next)) {
      if (key !== null) keyed.delete(key);
      if (match === cursor) cursor = cursor.nextSibling;
      else target.insertBefore(match, cursor);
      morph(match, next);
    } else {
      target.insertBefore(next, cursor);
    }
  }
  while (cursor) {
    const after = cursor.nextSibling;
    cursor.remove();
    cursor = after;
  }
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
