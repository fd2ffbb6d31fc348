// common.js: what every page shares. JSON calls with problem+json errors,
// the staff session and its CSRF token, a live stream that resumes and
// says when it is stale, money in the store's currency, sign-out, and a
// small element builder (no innerHTML with data: text is always text).

export const $ = (sel, root = document) => root.querySelector(sel);
export const $$ = (sel, root = document) => Array.from(root.querySelectorAll(sel));

/** Build an element: el("li", {class: "x", dataset: {id: 1}}, "text", child). */
export function el(tag, attrs = {}, ...children) {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k === "dataset") Object.assign(e.dataset, v);
    else if (k === "class") e.className = v;
    else if (k === "text") e.textContent = v;
    else if (k.startsWith("on") && typeof v === "function") e.addEventListener(k.slice(2), v);
    else e.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    e.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return e;
}

/** An API answer that was not 2xx: status, stable code, problem body. */
export class ApiError extends Error {
  constructor(status, problem) {
    super((problem && (problem.detail || problem.title)) || `HTTP ${status}`);
    this.status = status;
    this.code = problem && problem.code;
    this.problem = problem;
  }
}

let sessionPromise = null;

/** The signed-in staff session (`GET /v1/sessions/current`), or null. */
export function currentSession() {
  if (!sessionPromise) {
    sessionPromise = fetch("/v1/sessions/current", { headers: { Accept: "application/json" }, credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null))
      .catch(() => null);
  }
  return sessionPromise;
}

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);

/**
 * Call the JSON API. Unsafe methods carry the session's CSRF token when a
 * session exists (customers have none and need none). Resolves with the
 * parsed body (null for 204); rejects with ApiError, or TypeError on a
 * network failure.
 */
export async function api(path, { method = "GET", body, headers = {} } = {}) {
  const h = { Accept: "application/json", ...headers };
  if (body !== undefined) h["Content-Type"] = "application/json";
  if (UNSAFE.has(method)) {
    const s = await currentSession();
    if (s && s.csrf_token) h["X-CSRF-Token"] = s.csrf_token;
  }
  const r = await fetch(path, {
    method,
    headers: h,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "same-origin",
  });
  if (r.status === 204) return null;
  const text = await r.text();
  let data = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!r.ok) throw new ApiError(r.status, data);
  return data;
}

/** A 404 or 501 means "this server has no such route yet". */
export const missing = (e) => e instanceof ApiError && (e.status === 404 || e.status === 405 || e.status === 501);

const formats = new Map();
/** Minor units of `currency` as the reader writes money. */
export function money(amount, currency) {
  let f = formats.get(currency);
  if (!f) {
    f = new Intl.NumberFormat(document.documentElement.lang || "en", { style: "currency", currency });
    formats.set(currency, f);
  }
  const digits = f.resolvedOptions().maximumFractionDigits;
  return f.format(amount / 10 ** digits);
}

/** "3:07" for 187 seconds. */
export function clock(secs) {
  const s = Math.max(0, Math.floor(secs));
  const m = Math.floor(s / 60);
  const r = String(s % 60).padStart(2, "0");
  return m >= 60 ? `${Math.floor(m / 60)}:${String(m % 60).padStart(2, "0")}:${r}` : `${m}:${r}`;
}

/** "12 s ago" / "3 min ago". */
export function ago(ms) {
  const s = Math.max(0, Math.round(ms / 1000));
  return s < 90 ? `${s} s ago` : `${Math.round(s / 60)} min ago`;
}

/**
 * A live SSE stream that never goes silently stale.
 *
 * EventSource resumes with Last-Event-ID by itself after a dropped
 * connection, but gives up for good when a reconnect is answered with an
 * error (a restarting server answers 502/503, or nothing): then this
 * reopens it, after `?after=<last id>` so nothing is lost, with backoff.
 * The server's keep-alive is a named `heartbeat` event (a comment would be
 * invisible to the page), so "no event for two heartbeats" is noticed even
 * while the socket looks open.
 *
 * opts: { events: [names], onEvent(name, data, id), onState({live, age, since}), heartbeatSecs, after }
 * `url(after)` builds the stream URL for a start after an event id (or null).
 */
export function liveStream(url, opts) {
  const hb = (opts.heartbeatSecs || 15) * 1000;
  let lastId = opts.after ?? null;
  let lastAt = Date.now();
  let es = null;
  let backoff = 500;
  let reopenTimer = null;
  let stopped = false;
  const seen = new Set();
  const seenOrder = [];

  const state = () => {
    const age = Date.now() - lastAt;
    const open = es && es.readyState === EventSource.OPEN;
    return { live: !!open && age < 2 * hb + 1000, age, lastId };
  };
  const report = () => opts.onState && opts.onState(state());

  const touch = () => {
    lastAt = Date.now();
    backoff = 500;
    report();
  };

  const handle = (name) => (ev) => {
    touch();
    if (name === "heartbeat") return;
    const id = ev.lastEventId ? Number(ev.lastEventId) : null;
    if (id !== null) {
      // Dedupe across reconnects: an id already handled is dropped.
      if (seen.has(id)) return;
      seen.add(id);
      seenOrder.push(id);
      if (seenOrder.length > 5000) seen.delete(seenOrder.shift());
      if (lastId === null || id > lastId) lastId = id;
    }
    let data = null;
    try {
      data = ev.data ? JSON.parse(ev.data) : null;
    } catch {
      data = null;
    }
    opts.onEvent(name, data, id);
  };

  const open = () => {
    if (stopped) return;
    clearTimeout(reopenTimer);
    es = new EventSource(url(lastId), { withCredentials: true });
    es.addEventListener("open", touch);
    for (const name of [...opts.events, "heartbeat"]) es.addEventListener(name, handle(name));
    es.addEventListener("error", () => {
      report();
      if (es.readyState === EventSource.CLOSED) {
        // Given up by the browser: reopen ourselves, resuming after lastId.
        reopenTimer = setTimeout(open, backoff);
        backoff = Math.min(backoff * 2, 10000);
        if (opts.onClosed) opts.onClosed();
      }
    });
  };

  // A stream open but silent for two heartbeats is dead: reopen it.
  const watchdog = setInterval(() => {
    report();
    if (!stopped && es && es.readyState === EventSource.OPEN && Date.now() - lastAt > 2 * hb + 1000) {
      es.close();
      open();
    }
  }, 1000);

  open();
  return {
    get lastId() {
      return lastId;
    },
    /** Mark an id as handled (from a snapshot), so its event is dropped. */
    mark(id) {
      seen.add(id);
      seenOrder.push(id);
    },
    close() {
      stopped = true;
      clearInterval(watchdog);
      clearTimeout(reopenTimer);
      if (es) es.close();
    },
    state,
  };
}

/** Show a LIVE/STALE badge from a stream state. */
export function showLive(badge, st, ageEl) {
  if (!badge) return;
  badge.dataset.state = st.live ? "live" : "stale";
  badge.textContent = st.live ? "LIVE" : "STALE";
  if (ageEl) ageEl.textContent = `last update ${ago(st.age)}`;
  else badge.title = `last update ${ago(st.age)}`;
}

// Sign-out, on every page with the button.
const signout = document.getElementById("signout");
if (signout) {
  signout.addEventListener("click", async () => {
    try {
      await api("/v1/sessions/current", { method: "DELETE" });
    } catch {
      // Signed out already, or the server is away: the page reload shows which.
    }
    location.assign("/login");
  });
}
