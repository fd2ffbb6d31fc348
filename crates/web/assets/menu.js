// menu.js: the cart on the menu page and placing the order.
//
// The cart lives in localStorage (per store), so a reload or a lost tab
// keeps it. The Idempotency-Key is made on the device once per cart
// (crypto.randomUUID) and stored with it: every retry of the same cart —
// a double tap, a retry after a network error, a reload and tap again —
// sends the same key, so the server answers with the one order it made.
// Changing the cart makes it a new cart, with a new key.

import { $, $$, el, api, money, missing, ApiError } from "./common.js";

const root = $("#menu-page");
const store = root.dataset.store;
const currency = root.dataset.currency;
const KEY = `rushhour.cart.${store}`;

const newKey = () => (crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random().toString(16).slice(2)}`);

function load() {
  try {
    const c = JSON.parse(localStorage.getItem(KEY));
    if (c && Array.isArray(c.lines)) return c;
  } catch {
    // A damaged cart is an empty cart.
  }
  return { lines: [], key: newKey(), name: "" };
}

let cart = load();
let placing = false;

function save() {
  localStorage.setItem(KEY, JSON.stringify(cart));
}

function changed() {
  cart.key = newKey();
  save();
  render();
}

function render() {
  const list = $("#cart-lines");
  list.replaceChildren(
    ...cart.lines.map((l, i) =>
      el(
        "li",
        { class: "cart-line", "data-testid": `cart-line-${i}` },
        el("span", { class: "qty" }, `${l.qty} ×`),
        " ",
        el("span", { class: "what" }, l.label),
        " ",
        el("span", { class: "amount" }, money(l.unit * l.qty, currency)),
        " ",
        el(
          "button",
          { type: "button", class: "link", "aria-label": `Remove ${l.label}`, onclick: () => remove(i) },
          "Remove",
        ),
      ),
    ),
  );
  $("#cart-empty").hidden = cart.lines.length > 0;
  const total = cart.lines.reduce((s, l) => s + l.unit * l.qty, 0);
  $("#cart-total").textContent = money(total, currency);
  $("#place-order").disabled = placing || cart.lines.length === 0;
  $("#place-order").textContent = placing ? "Placing…" : "Place order";
}

function remove(i) {
  cart.lines.splice(i, 1);
  changed();
}

function add(form) {
  const sku = form.dataset.sku;
  const item = form.closest(".item");
  const size = form.querySelector('input[name="size"]:checked') || form.querySelector('input[name="size"][type="hidden"]');
  const mods = $$('input[name="modifier"]:checked', form);
  const qty = Math.min(20, Math.max(1, parseInt(form.querySelector('input[name="qty"]').value, 10) || 1));
  const unit = Number(size ? size.dataset.price : 0) + mods.reduce((s, m) => s + Number(m.dataset.delta), 0);
  const parts = [item.dataset.name];
  if (size && form.querySelectorAll('input[name="size"]').length > 1) parts.push(size.dataset.label);
  for (const m of mods) parts.push(m.dataset.label);
  const line = {
    sku,
    size: size ? size.value : null,
    modifiers: mods.map((m) => m.value),
    qty,
    unit,
    label: parts.join(", "),
  };
  const same = cart.lines.find(
    (l) => l.sku === line.sku && l.size === line.size && l.modifiers.join() === line.modifiers.join(),
  );
  if (same) same.qty = Math.min(20, same.qty + qty);
  else cart.lines.push(line);
  changed();
  $("#order-error").textContent = "";
  $("#cart-title").textContent = `Your order (${cart.lines.reduce((s, l) => s + l.qty, 0)})`;
}

async function place() {
  if (placing || cart.lines.length === 0) return;
  placing = true;
  render();
  const err = $("#order-error");
  err.textContent = "";
  const name = $("#name").value.trim();
  cart.name = name;
  save();
  const body = {
    store,
    lines: cart.lines.map((l) => ({ sku: l.sku, size: l.size || undefined, modifiers: l.modifiers, qty: l.qty })),
  };
  if (name) body.name = name;
  try {
    const receipt = await api("/v1/orders", { method: "POST", body, headers: { "Idempotency-Key": cart.key } });
    const page = (receipt.links && receipt.links.page) || `/orders/${receipt.id}?token=${receipt.access_token}`;
    localStorage.removeItem(KEY);
    location.assign(page);
    return;
  } catch (e) {
    if (e instanceof ApiError) {
      if (e.status === 503 || e.status === 429 || e.status >= 500) {
        err.textContent = "The shop is very busy. Tap Place order again in a moment; you will get one order, not two.";
      } else {
        const fields = e.problem && e.problem.errors ? ` (${e.problem.errors.map((f) => f.message || f.field).join("; ")})` : "";
        err.textContent = `${e.message}${fields}`;
      }
    } else {
      err.textContent = "No connection. Tap Place order again when you are back online; you will get one order, not two.";
    }
  } finally {
    placing = false;
    render();
  }
}

async function popular() {
  try {
    const p = await api(`/v1/stores/${encodeURIComponent(store)}/popular`);
    const items = (p && p.items) || [];
    const shown = items.filter((i) => document.getElementById(`item-${i.sku}`));
    if (shown.length === 0) return;
    $("#popular-list").replaceChildren(
      ...shown.slice(0, 6).map((i) =>
        el(
          "li",
          {},
          el(
            "a",
            { href: `#item-${i.sku}`, "data-testid": `popular-${i.sku}`, onclick: (ev) => jump(ev, i.sku) },
            i.name,
          ),
        ),
      ),
    );
    $("#popular").hidden = false;
  } catch (e) {
    // No popular list yet (or the route is missing): the row stays hidden.
    if (!missing(e)) console.debug("popular", e);
  }
}

function jump(ev, sku) {
  ev.preventDefault();
  const card = document.getElementById(`item-${sku}`);
  card.scrollIntoView({ block: "center" });
  const first = card.querySelector("input:not([type=hidden]):not(:disabled), button:not(:disabled)");
  if (first) first.focus();
}

for (const form of $$("form.add")) {
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    add(form);
  });
}
$("#place-order").addEventListener("click", place);
$("#name").value = cart.name || "";
// Drop lines whose item has been 86'd since they were added.
const before = cart.lines.length;
cart.lines = cart.lines.filter((l) => {
  const card = document.getElementById(`item-${l.sku}`);
  return card && card.dataset.available === "true";
});
if (cart.lines.length !== before) {
  changed();
  $("#order-error").textContent = "Something in your cart is no longer available and was removed.";
}
render();
popular();
