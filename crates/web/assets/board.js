// board.js: the barista / kitchen display.
//
// Load: the open tickets of this station (GET /v1/stores/{id}/tickets),
// then the board stream opened after the snapshot's cursor, so nothing
// falls between the two; every later change arrives as an event and
// touches only its own ticket's nodes (500 open tickets stay smooth: no
// re-render per event, numbering by CSS counters, one timer pass a second
// that writes only the text that changed). Without the tickets route
// (an older server) the stream's own replay of open tickets is used.
//
// Staff actions go to the JSON API with the session cookie and its CSRF
// token: tap a line to start it, again to finish it; bump finishes the
// ticket; undo (5 s) and recall (restore a ticket finished in the last 15
// minutes) both use the line undo route.

import { $, el, api, clock, liveStream, showLive, ApiError, missing } from "./common.js";

const root = $("#board");
const store = root.dataset.store;
const station = root.dataset.station;
const WARN = Number(root.dataset.warnSecs) * 1000;
const LATE = Number(root.dataset.lateSecs) * 1000;
const HEARTBEAT = Number(root.dataset.heartbeatSecs || 15);
const RECALL_MS = 15 * 60 * 1000;
const UNDO_MS = 5000;
const FINAL = new Set(["picked_up", "cancelled", "expired", "rejected"]);

const list = $("#tickets");
const announce = (text) => ($("#board-announce").textContent = text);
const fail = (text) => {
  $("#board-error").textContent = text;
  if (text) setTimeout(() => ($("#board-error").textContent === text ? ($("#board-error").textContent = "") : 0), 6000);
};

/** Open tickets by order id: { order, el, lines: Map(line -> {view, el}), since, age } */
const tickets = new Map();
/** Finished tickets for recall: order id -> { order, at } */
const recent = new Map();
/** Events that arrived while their order was being fetched. */
const pending = new Map();
const undos = [];
let ready = false;

const mine = (l) => l.station === station;
const t0 = (o) => Date.parse(o.placed_at);

// ------------------------------------------------------------ rendering

function lineText(l) {
  const bits = [l.name];
  if (l.size) bits.push(l.size);
  for (const m of l.modifiers || []) bits.push(m);
  return bits.join(" · ");
}

function ticketEl(o) {
  const lines = el("ol", { class: "lines" });
  const li = el(
    "li",
    { class: "ticket", "data-testid": "ticket", "data-order-id": o.id, "data-code": o.pickup_code || "", "data-age": "fresh" },
    el(
      "div",
      { class: "ticket-head" },
      el("span", { class: "code", "data-testid": "ticket-code" }, o.pickup_code || o.id.slice(-4)),
      el("span", { class: "who" }, o.name || ""),
      el("span", { class: "timer", "data-testid": "timer", role: "timer" }, "0:00"),
    ),
    lines,
    el("button", { type: "button", class: "bump", "data-testid": "bump", "data-action": "bump" }, "Bump"),
  );
  return { li, lines };
}

function lineEl(orderId, l) {
  return el(
    "button",
    {
      type: "button",
      class: "line",
      "data-testid": "line",
      "data-order-id": orderId,
      "data-line": l.line,
      "data-state": l.ticket || "queued",
      "aria-label": `${l.qty} ${lineText(l)}, ${l.ticket || "queued"}`,
    },
    el("span", { class: "qty" }, `${l.qty}×`),
    " ",
    el("span", { class: "what" }, lineText(l)),
  );
}

function setLineState(entry, state) {
  entry.view.ticket = state;
  entry.el.dataset.state = state;
  entry.el.setAttribute("aria-label", `${entry.view.qty} ${lineText(entry.view)}, ${state}`);
}

/** Insert a ticket in placed order (nearly always at the end). */
function place(t) {
  const at = t.since;
  let after = list.lastElementChild;
  while (after && tickets.get(after.dataset.orderId)?.since > at) after = after.previousElementSibling;
  if (after) after.after(t.el);
  else list.prepend(t.el);
}

function openLines(o) {
  return o.lines.filter((l) => mine(l) && l.ticket !== "done");
}

/** Add or refresh a ticket from an order view; drop it when nothing is left for this station. */
function upsert(o, { fresh = false } = {}) {
  const existing = tickets.get(o.id);
  const open = !FINAL.has(o.status) && ["confirmed", "in_progress"].includes(o.status) && openLines(o).length > 0;
  if (!open) {
    if (existing) finish(o.id, o);
    else if (o.lines.some(mine) && o.lines.filter(mine).every((l) => l.ticket === "done") && !FINAL.has(o.status))
      remember(o);
    return;
  }
  recent.delete(o.id);
  if (existing) {
    existing.order = o;
    for (const l of o.lines.filter(mine)) {
      const e = existing.lines.get(l.line);
      if (e) setLineState(e, l.ticket || "queued");
    }
    existing.el.dataset.code = o.pickup_code || "";
    existing.el.querySelector(".code").textContent = o.pickup_code || o.id.slice(-4);
    return;
  }
  const { li, lines } = ticketEl(o);
  const t = { order: o, el: li, lines: new Map(), since: t0(o), age: "fresh" };
  li.querySelector(".who").textContent = o.name || "";
  for (const l of o.lines.filter(mine)) {
    const b = lineEl(o.id, l);
    lines.append(el("li", {}, b));
    t.lines.set(l.line, { view: { ...l }, el: b });
  }
  tickets.set(o.id, t);
  place(t);
  ageOne(t, Date.now());
  if (fresh) {
    beep();
    announce(`New ticket ${o.pickup_code || ""}`);
  }
  counts();
}

function finish(id, o) {
  const t = tickets.get(id);
  if (!t) return;
  const wasFocused = t.el.contains(document.activeElement);
  const next = t.el.nextElementSibling || t.el.previousElementSibling;
  t.el.remove();
  tickets.delete(id);
  if (o && !["cancelled", "expired", "rejected"].includes(o.status)) remember(o);
  if (wasFocused && next) (next.querySelector(".line") || next).focus();
  counts();
}

function remember(o, at = Date.now()) {
  recent.set(o.id, { order: o, at });
  if (!$("#recall-panel").hidden) drawRecall();
}

function refreshCount() {
  $("#open-count").textContent = String(tickets.size);
}

let countsQueued = false;
/** All-day counts, recomputed once per frame at most. */
function counts() {
  refreshCount();
  if (countsQueued) return;
  countsQueued = true;
  requestAnimationFrame(() => {
    countsQueued = false;
    const by = new Map();
    for (const t of tickets.values()) {
      for (const { view } of t.lines.values()) {
        if (view.ticket === "done") continue;
        let c = by.get(view.name);
        if (!c) by.set(view.name, (c = { n: 0, kinds: new Map() }));
        c.n += view.qty;
        const kind = [view.size, ...(view.modifiers || [])].filter(Boolean).join(" ") || "plain";
        c.kinds.set(kind, (c.kinds.get(kind) || 0) + view.qty);
      }
    }
    const rows = [...by.entries()]
      .sort((a, b) => b[1].n - a[1].n)
      .map(([name, c]) =>
        el(
          "li",
          { "data-testid": "all-day-row", "data-item": name },
          el("strong", {}, `${c.n} ${name}`),
          c.kinds.size > 1 || !c.kinds.has("plain")
            ? ` — ${[...c.kinds.entries()].map(([k, n]) => `${n} ${k}`).join(", ")}`
            : "",
        ),
      );
    $("#allday-list").replaceChildren(...rows);
  });
}

function ageOne(t, now) {
  const age = now - t.since;
  const cls = age >= LATE ? "late" : age >= WARN ? "warn" : "fresh";
  if (cls !== t.age) {
    t.age = cls;
    t.el.dataset.age = cls;
  }
  const text = clock(age / 1000);
  const timer = t.el.querySelector(".timer");
  if (timer.textContent !== text) timer.textContent = text;
}

setInterval(() => {
  const now = Date.now();
  for (const t of tickets.values()) ageOne(t, now);
  for (const [id, r] of recent) if (now - r.at > RECALL_MS) recent.delete(id);
}, 1000);

// ------------------------------------------------------------ live data

const fetching = new Map();

function fetchOrder(id) {
  if (fetching.has(id)) return fetching.get(id);
  const p = api(`/v1/orders/${id}`)
    .then((o) => {
      // A restored ticket is not a new one: no beep.
      upsert(o, { fresh: ready && !recent.has(id) });
      for (const ev of pending.get(id) || []) apply(ev);
      pending.delete(id);
    })
    .catch((e) => {
      pending.delete(id);
      if (!(e instanceof ApiError && e.status === 404)) console.debug("order", id, e);
    })
    .finally(() => fetching.delete(id));
  fetching.set(id, p);
  return p;
}

/** One board event (LiveEventDto). */
function apply(ev) {
  if (!ev || !ev.order_id) return;
  const id = ev.order_id;
  if (fetching.has(id)) {
    if (!pending.has(id)) pending.set(id, []);
    pending.get(id).push(ev);
    return;
  }
  const t = tickets.get(id);
  if (FINAL.has(ev.status)) {
    if (t) finish(id, { ...t.order, status: ev.status });
    recent.delete(id);
    return;
  }
  if (!t) {
    // A new order, a line of ours restored, or one we have not seen.
    if (ev.kind === "status" && ev.status === "confirmed") fetchOrder(id);
    else if (ev.kind === "ticket" && ev.station === station && ev.ticket !== "done") fetchOrder(id);
    return;
  }
  t.order.status = ev.status;
  if (ev.pickup_code && !t.order.pickup_code) {
    t.order.pickup_code = ev.pickup_code;
    t.el.querySelector(".code").textContent = ev.pickup_code;
  }
  if (ev.kind === "ticket" && ev.station === station && ev.line) {
    const e = t.lines.get(ev.line);
    if (e) setLineState(e, ev.ticket);
    if ([...t.lines.values()].every((x) => x.view.ticket === "done")) {
      t.order.lines = t.order.lines.map((l) => (t.lines.has(l.line) ? { ...l, ticket: t.lines.get(l.line).view.ticket } : l));
      finish(id, t.order);
    } else counts();
  }
}

async function loadSnapshot() {
  try {
    const snap = await api(
      `/v1/stores/${encodeURIComponent(store)}/tickets?station=${station}&recent_secs=${RECALL_MS / 1000}`,
    );
    for (const o of snap.open || []) upsert(o);
    // Finished before this page loaded: they leave the recall list 15
    // minutes after they were finished (ready), not after the load.
    for (const o of snap.recent || []) remember(o, Date.parse(o.ready_at) || Date.now());
    return { cursor: snap.cursor };
  } catch (e) {
    if (missing(e)) return { cursor: null, replay: true };
    throw e;
  }
}

let stream = null;

async function start() {
  root.dataset.state = "loading";
  let snap;
  try {
    snap = await loadSnapshot();
  } catch (e) {
    fail(`Cannot load the tickets: ${e.message}. Retrying…`);
    setTimeout(start, 2000);
    return;
  }
  stream = liveStream(
    (after) => `/v1/stores/${encodeURIComponent(store)}/board${after !== null && after !== undefined ? `?after=${after}` : ""}`,
    {
      events: ["status", "ticket"],
      after: snap.cursor,
      heartbeatSecs: HEARTBEAT,
      onEvent: (_name, data) => apply(data),
      onState: (st) => {
        showLive($("#live-badge"), st, $("#live-age"));
        root.classList.toggle("stale", !st.live);
        root.dataset.live = st.live ? "live" : "stale";
      },
    },
  );
  ready = true;
  root.dataset.state = "ready";
  counts();
}

// ------------------------------------------------------------ actions

const route = (id, line, what) => `/v1/orders/${id}/lines/${line}/${what}`;

function pushUndo(steps, label) {
  undos.push({ steps, at: Date.now(), label });
  while (undos.length > 20) undos.shift();
  refreshUndo();
}

function refreshUndo() {
  const now = Date.now();
  while (undos.length && now - undos[0].at > UNDO_MS) undos.shift();
  const b = $("#undo");
  b.disabled = undos.length === 0;
  const last = undos[undos.length - 1];
  b.textContent = last ? `Undo ${last.label} (U)` : "Undo (U)";
}
setInterval(refreshUndo, 500);

async function act(id, line, what) {
  const o = await api(route(id, line, what), { method: "POST" });
  if (o && o.lines) {
    const t = tickets.get(id);
    if (t) upsert(o);
    else if (what === "undo") upsert(o, { fresh: false });
  }
  return o;
}

async function tapLine(button) {
  const id = button.dataset.orderId;
  const line = Number(button.dataset.line);
  const state = button.dataset.state;
  const what = state === "queued" ? "start" : state === "started" ? "done" : null;
  if (!what || button.dataset.busy) return;
  button.dataset.busy = "1";
  const t = tickets.get(id);
  const code = t ? t.order.pickup_code || "" : "";
  try {
    await act(id, line, what);
    pushUndo([{ id, line }], `${what === "start" ? "start" : "finish"} ${code}`);
  } catch (e) {
    fail(`Could not ${what} that line: ${e.message}`);
  } finally {
    delete button.dataset.busy;
  }
}

async function bump(t) {
  if (!t || t.bumping) return;
  t.bumping = true;
  const id = t.order.id;
  const steps = [];
  try {
    for (const [line, e] of t.lines) {
      if (e.view.ticket === "done") continue;
      if (e.view.ticket !== "started") {
        await api(route(id, line, "start"), { method: "POST" });
        steps.push({ id, line });
      }
      await api(route(id, line, "done"), { method: "POST" });
      steps.push({ id, line });
      setLineState(e, "done");
    }
    pushUndo(steps, `bump ${t.order.pickup_code || ""}`);
    announce(`Bumped ${t.order.pickup_code || ""}`);
    finish(id, { ...t.order, lines: t.order.lines.map((l) => (mine(l) ? { ...l, ticket: "done" } : l)) });
  } catch (e) {
    fail(`Could not bump: ${e.message}`);
    if (steps.length) pushUndo(steps, `bump ${t.order.pickup_code || ""}`);
  } finally {
    t.bumping = false;
  }
}

async function undo() {
  refreshUndo();
  const u = undos.pop();
  refreshUndo();
  if (!u) return;
  try {
    for (const s of [...u.steps].reverse()) await act(s.id, s.line, "undo");
    announce(`Undone: ${u.label}`);
  } catch (e) {
    fail(missing(e) ? "Undo is not available on this server." : `Could not undo: ${e.message}`);
  }
}

/** Restore a finished ticket: undo its last finished line of this station. */
async function restore(id) {
  const r = recent.get(id);
  if (!r) return;
  const done = r.order.lines.filter((l) => mine(l) && l.ticket === "done");
  const last = done[done.length - 1];
  if (!last) return;
  try {
    const o = await act(id, last.line, "undo");
    recent.delete(id);
    if (o && o.lines) upsert(o);
    drawRecall();
    announce(`Restored ${r.order.pickup_code || ""}`);
  } catch (e) {
    fail(missing(e) ? "Recall is not available on this server." : `Could not restore: ${e.message}`);
  }
}

function drawRecall() {
  const items = [...recent.values()].sort((a, b) => b.at - a.at);
  $("#recall-list").replaceChildren(
    ...items.map((r) =>
      el(
        "li",
        { "data-testid": "recall-item", "data-order-id": r.order.id },
        el("span", { class: "code" }, r.order.pickup_code || r.order.id.slice(-4)),
        " ",
        el("span", {}, r.order.lines.filter(mine).map((l) => `${l.qty}× ${lineText(l)}`).join("; ")),
        " ",
        el("button", { type: "button", "data-testid": "restore", onclick: () => restore(r.order.id) }, "Restore"),
      ),
    ),
  );
  if (!items.length) $("#recall-list").append(el("li", {}, "Nothing finished in the last 15 minutes."));
}

function toggleRecall(force) {
  const panel = $("#recall-panel");
  const show = force ?? panel.hidden;
  panel.hidden = !show;
  $("#recall").setAttribute("aria-expanded", String(show));
  if (show) {
    drawRecall();
    (panel.querySelector("button[data-testid=restore]") || $("#recall-close")).focus();
  } else $("#recall").focus();
}

// ------------------------------------------------------------ sound

let audio = null;
let soundOn = false;

function arm() {
  if (audio) return;
  try {
    audio = new AudioContext();
    soundOn = true;
    showSound();
  } catch {
    audio = null;
  }
}

function showSound() {
  const b = $("#sound");
  b.setAttribute("aria-pressed", String(soundOn));
  b.textContent = soundOn ? "Sound on" : "Sound off";
  root.dataset.sound = soundOn ? "on" : "off";
}

function beep() {
  if (!audio || !soundOn) return;
  const o = audio.createOscillator();
  const g = audio.createGain();
  o.frequency.value = 880;
  g.gain.setValueAtTime(0.2, audio.currentTime);
  g.gain.exponentialRampToValueAtTime(0.001, audio.currentTime + 0.25);
  o.connect(g).connect(audio.destination);
  o.start();
  o.stop(audio.currentTime + 0.25);
}

$("#sound").addEventListener("click", () => {
  if (!audio) arm();
  else {
    soundOn = !soundOn;
    showSound();
  }
  if (audio && audio.state === "suspended") audio.resume();
});
document.addEventListener("pointerdown", arm, { once: true });
document.addEventListener("keydown", arm, { once: true });

// ------------------------------------------------------------ input

list.addEventListener("click", (ev) => {
  const line = ev.target.closest("button.line");
  if (line) return void tapLine(line);
  const b = ev.target.closest("button.bump");
  if (b) bump(tickets.get(b.closest(".ticket").dataset.orderId));
});
$("#undo").addEventListener("click", undo);
$("#recall").addEventListener("click", () => toggleRecall());
$("#recall-close").addEventListener("click", () => toggleRecall(false));

function moveFocus(key) {
  const cur = document.activeElement;
  const ticket = cur && cur.closest ? cur.closest(".ticket") : null;
  if (!ticket) {
    const first = list.querySelector(".line");
    if (first) first.focus();
    return;
  }
  const buttons = [...ticket.querySelectorAll("button")];
  const i = buttons.indexOf(cur);
  if (key === "ArrowDown") (buttons[i + 1] || buttons[i]).focus();
  else if (key === "ArrowUp") (buttons[i - 1] || buttons[i]).focus();
  else {
    const other = key === "ArrowRight" ? ticket.nextElementSibling : ticket.previousElementSibling;
    if (other) {
      const ob = [...other.querySelectorAll("button")];
      (ob[Math.min(Math.max(i, 0), ob.length - 1)] || other).focus();
    }
  }
}

document.addEventListener("keydown", (ev) => {
  if (ev.ctrlKey || ev.metaKey || ev.altKey) return;
  const tag = ev.target && ev.target.tagName;
  if (tag === "INPUT" || tag === "TEXTAREA" || tag === "SELECT") return;
  if (ev.key >= "1" && ev.key <= "9") {
    const t = list.children[Number(ev.key) - 1];
    if (t) bump(tickets.get(t.dataset.orderId));
    ev.preventDefault();
  } else if (ev.key.startsWith("Arrow")) {
    moveFocus(ev.key);
    ev.preventDefault();
  } else if (ev.key === "r" || ev.key === "R") {
    toggleRecall();
    ev.preventDefault();
  } else if (ev.key === "u" || ev.key === "U") {
    undo();
    ev.preventDefault();
  } else if (ev.key === "Escape" && !$("#recall-panel").hidden) {
    toggleRecall(false);
  }
});

showSound();
start();
