// order.js: the customer's order page. Reads the order with the token
// from the page URL, follows its event stream and re-reads the order on
// each change (the order view carries the pickup code and the estimate,
// which the events do not), counts the estimate down, and offers cancel
// while the order can still be cancelled.

import { $, el, api, money, clock, liveStream, ApiError } from "./common.js";

const root = $("#order-page");
const id = root.dataset.orderId;
const token = new URLSearchParams(location.search).get("token") || "";

const WORDS = {
  placed: "Received — waiting for the shop to confirm",
  confirmed: "Confirmed — in the queue",
  in_progress: "Being made",
  ready: "Ready for pickup",
  picked_up: "Picked up — enjoy!",
  cancelled: "Cancelled",
  rejected: "Not accepted",
  expired: "Expired",
};
const LINE = { queued: "waiting", started: "being made", done: "done" };
const NOTICE = {
  cancelled: (o) =>
    `This order was cancelled${o.cancel_reason ? `: ${o.cancel_reason}` : ""}. You have not been charged for it.`,
  rejected: (o) =>
    `The shop could not accept this order${o.reject_reason ? ` (${o.reject_reason})` : ""}. You have not been charged for it.`,
  expired: () => "This order was not picked up in time and has expired. Please ask at the counter.",
};

let readyAt = null;
let refetch = null;

function render(o) {
  const status = $("#order-status");
  status.textContent = WORDS[o.status] || o.status;
  status.dataset.status = o.status;
  root.dataset.status = o.status;
  $("#pickup-code").textContent = o.pickup_code || "—";
  const notice = $("#order-notice");
  const say = NOTICE[o.status];
  notice.hidden = !say;
  notice.textContent = say ? say(o) : "";
  $("#order-lines").replaceChildren(
    ...o.lines.map((l) => {
      const state = l.ticket || "queued";
      return el(
        "li",
        { class: `line ${state}`, "data-testid": `line-${l.line}`, "data-state": state },
        el("span", { class: "qty" }, `${l.qty} ×`),
        " ",
        el("span", { class: "what" }, [l.name, l.size, ...(l.modifiers || [])].filter(Boolean).join(", ")),
        " ",
        el("span", { class: "line-state", "data-testid": `line-state-${l.line}` }, LINE[state] || state),
      );
    }),
  );
  $("#order-total").textContent = money(o.total.amount, o.total.currency);
  const est = o.estimate;
  readyAt = est && ["confirmed", "in_progress"].includes(o.status) ? Date.now() + est.seconds_left * 1000 : null;
  root.dataset.estimateBasis = est ? est.basis : "";
  tick();
  $("#cancel").hidden = !["placed", "confirmed"].includes(o.status);
  if (["picked_up", "cancelled", "rejected", "expired"].includes(o.status) && stream) stream.close();
}

function tick() {
  const e = $("#estimate");
  if (readyAt === null) {
    e.textContent = root.dataset.status === "ready" ? "It is ready: show your pickup code at the counter." : "";
    return;
  }
  const left = (readyAt - Date.now()) / 1000;
  e.textContent = left > 0 ? `Ready in about ${clock(left)}` : "Any moment now…";
}

async function load() {
  try {
    render(await api(`/v1/orders/${id}`, { headers: { "X-Order-Token": token } }));
  } catch (e) {
    const status = $("#order-status");
    if (e instanceof ApiError && (e.status === 401 || e.status === 403)) {
      status.textContent = "This link is not valid for this order.";
    } else if (e instanceof ApiError && e.status === 404) {
      status.textContent = "No such order.";
    } else if (e instanceof ApiError && e.status === 503) {
      // Durable but not applied yet: try again shortly.
      status.textContent = WORDS.placed;
      setTimeout(load, 500);
    } else {
      status.textContent = "Cannot reach the shop right now; this page will catch up.";
    }
  }
}

function soon() {
  clearTimeout(refetch);
  refetch = setTimeout(load, 100);
}

$("#cancel").addEventListener("click", async () => {
  const err = $("#cancel-error");
  err.textContent = "";
  $("#cancel").disabled = true;
  try {
    await api(`/v1/orders/${id}/cancel`, { method: "POST", headers: { "X-Order-Token": token } });
    await load();
  } catch (e) {
    err.textContent =
      e instanceof ApiError && e.status === 409
        ? "Too late to cancel: the shop has started on it."
        : `Could not cancel: ${e.message}`;
  } finally {
    $("#cancel").disabled = false;
  }
});

let stream = null;
await load();
if (token && !["picked_up", "cancelled", "rejected", "expired"].includes(root.dataset.status)) {
  stream = liveStream(() => `/v1/orders/${id}/events?token=${encodeURIComponent(token)}`, {
    events: ["status", "ticket"],
    onEvent: soon,
    // After a reconnect the order may have moved on: read it again.
    onState: (st) => {
      if (st.live && root.dataset.wasStale === "1") soon();
      root.dataset.wasStale = st.live ? "0" : "1";
    },
  });
}
setInterval(tick, 1000);
