// Shared by every console page: fetching the API, building DOM, showing errors.

/** Errors a page hit, shown in its footer (and read by the browser tests). */
export function showError(message) {
  const list = document.getElementById('errors');
  if (list) list.append(el('li', {}, String(message)));
  document.body.dataset.errors = String((Number(document.body.dataset.errors) || 0) + 1);
}

window.addEventListener('error', (e) => showError(e.message));
window.addEventListener('unhandledrejection', (e) => showError(e.reason && e.reason.message ? e.reason.message : e.reason));

/** GET a console API path; the parsed JSON, or an Error naming the path and the reason. */
export async function api(path, init) {
  const r = await fetch('/console/api/' + path, Object.assign({ credentials: 'same-origin', cache: 'no-store' }, init));
  const text = await r.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    throw new Error(`${path}: HTTP ${r.status}, not JSON`);
  }
  if (!r.ok) {
    const err = new Error(body.error || `${path}: HTTP ${r.status}`);
    err.status = r.status;
    throw err;
  }
  return body;
}

/** An element with attributes (`class`, `data-*`, others) and children (nodes or text). */
export function el(tag, attrs, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === 'class') e.className = v;
    else if (k.startsWith('data-')) e.dataset[k.slice(5).replace(/-(.)/g, (_, c) => c.toUpperCase())] = v;
    else e.setAttribute(k, v === true ? '' : v);
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null) continue;
    e.append(c instanceof Node ? c : String(c));
  }
  return e;
}

/** Unix seconds as `YYYY-MM-DD HH:MM:SS` UTC. */
export function utc(secs) {
  if (secs === undefined || secs === null) return '';
  return new Date(secs * 1000).toISOString().replace('T', ' ').replace(/\.\d+Z$/, '');
}

/** Marks the page's nav link and fills in the node id. */
export function frame(page) {
  for (const a of document.querySelectorAll('nav a')) {
    if (a.dataset.nav === page) a.classList.add('current');
  }
}

export function setNodeId(id) {
  const n = document.getElementById('node-id');
  if (n) n.textContent = id;
}

/** Marks the page loaded, for people (nothing) and for the browser tests. */
export function ready() {
  document.body.dataset.state = 'ready';
}
