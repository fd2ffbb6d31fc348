// pickup.js: the public pickup board. The snapshot (GET
// /v1/stores/{id}/pickup) then the public pickup stream after its cursor;
// each `pickup` event moves one code between the columns or removes it.
// Only codes and first names exist here (that is all the routes send).

import { $, el, api, liveStream, showLive, missing } from "./common.js";

const root = $("#pickup");
const store = root.dataset.store;
const HEARTBEAT = Number(root.dataset.heartbeatSecs || 15);
const cols = { preparing: $("#preparing"), ready: $("#ready") };
/** order id -> { entry, el } */
const shown = new Map();

function entryEl(e) {
  return el(
    "li",
    { class: "code-card", "data-testid": "pickup-entry", "data-order-id": e.order_id, "data-code": e.code, "data-state": e.state },
    el("span", { class: "code" }, e.code),
    e.name ? el("span", { class: "name" }, e.name) : null,
  );
}

/** Keep each column in code order (codes grow through the day). */
function insert(col, node, at) {
  let before = null;
  for (const c of col.children) {
    if (Number(c.dataset.at) > at) {
      before = c;
      break;
    }
  }
  col.insertBefore(node, before);
}

function apply(e) {
  if (!e || !e.order_id) return;
  const cur = shown.get(e.order_id);
  if (e.state === "gone" || !cols[e.state]) {
    if (cur) cur.el.remove();
    shown.delete(e.order_id);
    return;
  }
  if (cur && cur.entry.state === e.state) return;
  if (cur) cur.el.remove();
  const node = entryEl(e);
  node.dataset.at = String(e.at || 0);
  insert(cols[e.state], node, e.at || 0);
  shown.set(e.order_id, { entry: e, el: node });
  if (e.state === "ready") {
    node.classList.add("just-ready");
    setTimeout(() => node.classList.remove("just-ready"), 4000);
  }
}

async function start() {
  let cursor = null;
  try {
    const snap = await api(`/v1/stores/${encodeURIComponent(store)}/pickup`);
    for (const e of snap.orders || []) apply(e);
    cursor = snap.cursor;
  } catch (e) {
    if (missing(e)) {
      $("#pickup-error").textContent = "The pickup board is not available on this server.";
      return;
    }
    $("#pickup-error").textContent = "Reconnecting…";
    setTimeout(start, 3000);
    return;
  }
  $("#pickup-error").textContent = "";
  liveStream(
    (after) => `/v1/stores/${encodeURIComponent(store)}/pickup/events${after !== null && after !== undefined ? `?after=${after}` : ""}`,
    {
      events: ["pickup"],
      after: cursor,
      heartbeatSecs: HEARTBEAT,
      onEvent: (_n, data) => apply(data),
      onState: (st) => {
        showLive($("#live-badge"), st);
        root.classList.toggle("stale", !st.live);
      },
    },
  );
}

start();
