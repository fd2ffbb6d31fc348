// manage.js: the manager's page. Availability switches (PUT
// availability), today's orders with a status filter and search by
// pickup code, cancel with a reason, and the day's figures with a bar
// chart per hour. Each part says "not available" on its own when its
// route does not answer.

import { $, $$, el, api, money, missing, ApiError } from "./common.js";
import { barChart } from "./charts.js";

const root = $("#manage");
const store = root.dataset.store;
const currency = root.dataset.currency;
const enc = encodeURIComponent(store);
const err = (t) => ($("#manage-error").textContent = t);

// ------------------------------------------------------------ availability

for (const sw of $$("button.switch")) {
  sw.addEventListener("click", async () => {
    const next = sw.getAttribute("aria-checked") !== "true";
    sw.disabled = true;
    try {
      await api(`/v1/stores/${enc}/items/${encodeURIComponent(sw.dataset.sku)}/availability`, {
        method: "PUT",
        body: { available: next },
      });
      sw.setAttribute("aria-checked", String(next));
      sw.querySelector(".state").textContent = next ? "On" : "86'd";
      err("");
    } catch (e) {
      err(`Could not change ${sw.dataset.sku}: ${e.message}`);
    } finally {
      sw.disabled = false;
    }
  });
}

// ------------------------------------------------------------ orders

const CANCELLABLE = new Set(["placed", "confirmed"]);
let cancelling = null;

// The store's local day, as the server computed it for this page. A page
// left open past the day's end reloads, so "today" moves with the shop.
function startOfToday() {
  const root = $("#manage");
  if (Date.now() >= Number(root.dataset.dayEnd)) location.reload();
  return Number(root.dataset.dayStart);
}

async function loadOrders() {
  const q = new URLSearchParams({ store, limit: "100", since: String(startOfToday()) });
  const status = $("#filter-status").value;
  const code = $("#filter-code").value.trim().toUpperCase();
  if (status) q.set("status", status);
  if (code) q.set("code", code);
  const state = $("#orders-state");
  state.textContent = "Loading…";
  try {
    const page = await api(`/v1/orders?${q}`);
    let orders = page.orders || page.items || [];
    // An older server ignores `code`: filter here too.
    if (code) orders = orders.filter((o) => (o.pickup_code || "").toUpperCase() === code);
    $("#orders-body").replaceChildren(...orders.map(row));
    state.textContent = orders.length ? `${orders.length} order(s)` : "No orders match.";
  } catch (e) {
    state.textContent = missing(e) ? "The order list is not available on this server." : `Cannot load orders: ${e.message}`;
  }
}

function row(o) {
  const placed = new Date(o.placed_at);
  return el(
    "tr",
    { "data-testid": "order-row", "data-order-id": o.id, "data-status": o.status },
    el("td", { "data-testid": "order-code" }, o.pickup_code || "—"),
    el("td", {}, o.name || o.customer || ""),
    el("td", { "data-testid": "order-status" }, o.status.replace("_", " ")),
    el("td", {}, placed.toLocaleTimeString([], { hour: "2-digit", minute: "2-digit" })),
    el("td", {}, money(o.total.amount, o.total.currency || currency)),
    el(
      "td",
      {},
      CANCELLABLE.has(o.status)
        ? el("button", { type: "button", "data-testid": "order-cancel", onclick: () => askCancel(o) }, "Cancel…")
        : "",
    ),
  );
}

function askCancel(o) {
  cancelling = o;
  const form = $("#cancel-form");
  $("#cancel-title").textContent = `Cancel order ${o.pickup_code || o.id.slice(-6)}`;
  form.hidden = false;
  $("#cancel-reason").value = "";
  $("#cancel-reason").focus();
}

$("#cancel-dismiss").addEventListener("click", () => {
  $("#cancel-form").hidden = true;
  cancelling = null;
});

$("#cancel-form").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  if (!cancelling) return;
  const reason = $("#cancel-reason").value.trim();
  try {
    await api(`/v1/orders/${cancelling.id}/cancel`, { method: "POST", body: reason ? { reason } : {} });
    $("#cancel-form").hidden = true;
    cancelling = null;
    err("");
    loadOrders();
  } catch (e) {
    err(e instanceof ApiError && e.status === 409 ? "Too late: the order has moved on." : `Could not cancel: ${e.message}`);
  }
});

$("#order-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  loadOrders();
});

// ------------------------------------------------------------ figures

const secs = (v) => (v === null || v === undefined ? "—" : v >= 90 ? `${(v / 60).toFixed(1)} min` : `${Math.round(v)} s`);

async function loadFigures() {
  const date = $("#fig-date").value;
  try {
    const f = await api(`/v1/stores/${enc}/figures${date ? `?date=${date}` : ""}`);
    if (!date && f.date) $("#fig-date").value = f.date;
    $("#fig-orders").textContent = String(f.orders);
    $("#fig-picked").textContent = String(f.picked_up);
    $("#fig-cancelled").textContent = String(f.cancelled);
    $("#fig-avg").textContent = secs(f.avg_ready_secs);
    $("#fig-p90").textContent = secs(f.p90_ready_secs);
    const hours = Array.from({ length: 24 }, (_, h) => {
      const p = (f.per_hour || []).find((x) => x.hour === h);
      return { label: String(h), value: p ? p.orders : 0 };
    });
    $("#fig-chart").replaceChildren(barChart(hours, { title: `Orders per hour on ${f.date}` }));
  } catch (e) {
    $("#fig-chart").replaceChildren(
      el("p", {}, missing(e) ? "Figures are not available on this server." : `Cannot load figures: ${e.message}`),
    );
  }
}
$("#fig-date").addEventListener("change", loadFigures);

loadOrders();
loadFigures();
setInterval(loadOrders, 15000);
