// ops.js: the operator's dashboard. Live figures (GET /v1/admin/figures)
// every second, paused while the tab is hidden (visibilitychange), drawn
// as SVG line charts by charts.js; the 5-minute snapshot history; jobs
// with filters, one job's details and bulk retry/discard of everything
// matching; schedules with "run now"; dead letters; the menu cache per
// store; users, API keys and the audit log. A section whose route does
// not answer says so and the others go on.

import { $, el, api, missing, ago } from "./common.js";
import { lineChart, legend } from "./charts.js";

const state = (id, text) => ($(`#${id}-state`).textContent = text);
const fail = (id, e) => state(id, missing(e) ? "Not available on this server." : `Cannot load: ${e.message}`);
const when = (s) => (s ? new Date(typeof s === "number" ? s : Date.parse(s)).toLocaleString() : "—");
const num = (v, d = 1) => (v === null || v === undefined ? "—" : typeof v === "number" ? (Number.isInteger(v) ? String(v) : v.toFixed(d)) : String(v));
const td = (...c) => el("td", {}, ...c);
const button = (text, testid, onclick, cls) => el("button", { type: "button", "data-testid": testid, onclick, class: cls }, text);

// ------------------------------------------------------------ live

let lastOk = 0;
let liveMissing = false;
let timer = null;

const NOW = [
  ["intake_per_sec", "Intake /s"],
  ["confirmed_per_sec", "Confirmed /s"],
  ["intake_p50_ms", "Intake p50 ms"],
  ["intake_p99_ms", "Intake p99 ms"],
  ["confirm_p50_ms", "202→confirmed p50 ms"],
  ["confirm_p99_ms", "202→confirmed p99 ms"],
  ["lag_total", "Lag"],
  ["batch_size_avg", "Batch size"],
  ["cache_hit_ratio", "Cache hit ratio"],
  ["dead_letters", "Dead letters"],
  ["open_streams", "Open streams"],
];

function chart(id, t, series, opts) {
  const box = $(`#chart-${id}`);
  box.replaceChildren(lineChart(t, series, opts), legend(series));
  box.dataset.points = String(t.length);
}

function drawLive(f) {
  $("#live-instance").textContent = `${f.instance} (${f.role}), up ${Math.round(f.uptime_secs / 60)} min`;
  $("#now").replaceChildren(
    ...NOW.map(([k, label]) =>
      el("div", {}, el("dt", {}, label), el("dd", { "data-testid": `now-${k}` }, k === "cache_hit_ratio" && f.now[k] !== null ? `${(f.now[k] * 100).toFixed(1)}%` : num(f.now[k]))),
    ),
  );
  const s = f.series || {};
  const t = s.t || [];
  chart("intake", t, [{ name: "intake/s", values: s.intake_per_sec || [] }, { name: "confirmed/s", values: s.confirmed_per_sec || [] }], { title: "Intake and confirmed per second" });
  chart("latency", t, [{ name: "intake p99 ms", values: s.intake_p99_ms || [] }, { name: "202→confirmed p99 ms", values: s.confirm_p99_ms || [] }], { title: "Latency p99" });
  chart("lag", t, [{ name: "lag", values: s.lag_total || [] }], { title: "Processor lag" });
  chart("batch", t, [{ name: "batch size", values: s.batch_size_avg || [] }], { title: "Average batch size" });
  chart("cache", t, [{ name: "hit %", values: (s.cache_hit_ratio || []).map((v) => (v === null ? null : v * 100)) }], { title: "Cache hit ratio", max: 100 });
  chart("dead", t, [{ name: "dead letters", values: s.dead_letters || [] }], { title: "Dead letters" });
  $("#partitions-body").replaceChildren(
    ...(f.partitions || []).map((p) => el("tr", { "data-testid": "partition-row" }, td(p.partition), td(p.lag), td(p.next_offset), td(p.end_offset))),
  );
  drawQueues(f.queues || []);
  $("#sync-body").replaceChildren(
    ...(f.sync_runs || []).map((r) =>
      el("tr", {}, td(r.kind), td(when(r.started_at)), td(num(r.fetched)), td(num(r.changed)), td(num(r.errors)), td(r.outcome)),
    ),
  );
}

function drawQueues(qs) {
  $("#queues-body").replaceChildren(
    ...qs.map((q) => el("tr", { "data-testid": "queue-row" }, td(q.queue), td(q.ready ?? q.queued), td(q.scheduled), td(q.running), td(q.done), td(q.dead))),
  );
}

async function tickLive() {
  if (document.hidden) return;
  try {
    if (liveMissing) {
      const q = await api("/v1/admin/queues");
      drawQueues(q.queues || []);
    } else {
      drawLive(await api("/v1/admin/figures?window=300"));
    }
    lastOk = Date.now();
    state("live", liveMissing ? "Live figures are not available on this server; queues only." : "");
  } catch (e) {
    if (missing(e) && !liveMissing) {
      liveMissing = true;
      return tickLive();
    }
    fail("live", e);
  } finally {
    const badge = $("#ops-badge");
    const fresh = Date.now() - lastOk < 3000;
    badge.dataset.state = document.hidden ? "paused" : fresh ? "live" : "stale";
    badge.textContent = document.hidden ? "PAUSED" : fresh ? "LIVE" : `STALE (${ago(Date.now() - lastOk)})`;
  }
}

function startLive() {
  clearInterval(timer);
  timer = setInterval(tickLive, 1000);
  tickLive();
}

document.addEventListener("visibilitychange", () => {
  if (document.hidden) {
    clearInterval(timer);
    $("#ops").dataset.paused = "true";
  } else {
    $("#ops").dataset.paused = "false";
    startLive();
    refreshAll();
  }
});

// ------------------------------------------------------------ history

async function loadHistory() {
  try {
    const h = await api(`/v1/admin/snapshots?hours=${$("#history-hours").value}`);
    const items = (h.items || []).slice().sort((a, b) => Date.parse(a.at) - Date.parse(b.at));
    if (!items.length) return state("history", "No snapshots yet (one is taken every 5 minutes).");
    const numeric = (m) => Object.entries(m || {}).filter(([, v]) => typeof v === "number");
    const keys = [];
    for (const it of items) for (const [k] of numeric(it.metrics)) if (!keys.includes(k)) keys.push(k);
    const prefer = keys.filter((k) => /p99|per_sec|lag|rate/.test(k));
    const chosen = (prefer.length ? prefer : keys).slice(0, 3);
    const t = items.map((i) => (typeof i.at === "number" ? i.at : Date.parse(i.at)));
    const series = chosen.map((k) => ({ name: k, values: items.map((i) => (typeof i.metrics?.[k] === "number" ? i.metrics[k] : null)) }));
    $("#chart-history").replaceChildren(lineChart(t, series, { title: "History", width: 900, height: 200 }), legend(series));
    state("history", `${items.length} snapshots`);
  } catch (e) {
    fail("history", e);
  }
}
$("#history-hours").addEventListener("change", loadHistory);

// ------------------------------------------------------------ jobs

function jobFilter() {
  const f = {};
  for (const k of ["queue", "state", "kind"]) {
    const v = $(`#job-${k}`).value.trim();
    if (v) f[k] = v;
  }
  return f;
}

async function loadJobs() {
  try {
    const page = await api(`/v1/admin/jobs?${new URLSearchParams({ ...jobFilter(), limit: "50" })}`);
    const jobs = page.jobs || page.items || [];
    $("#jobs-body").replaceChildren(
      ...jobs.map((j) =>
        el(
          "tr",
          { "data-testid": "job-row", "data-job-id": j.id, "data-state": j.state },
          td(button(String(j.id), "job-open", () => showJob(j.id), "link")),
          td(j.kind),
          td(j.queue),
          td(j.state),
          td(`${j.attempts}/${j.max_attempts}`),
          td(when(j.run_at)),
          td(
            j.state === "dead" || j.state === "queued" ? button("Retry", "job-retry", () => jobAction(j.id, "retry")) : "",
            " ",
            j.state !== "running" ? button("Discard", "job-discard", () => jobAction(j.id, "discard")) : "",
          ),
        ),
      ),
    );
    state("jobs", jobs.length ? `${jobs.length} job(s) shown` : "No jobs match.");
  } catch (e) {
    fail("jobs", e);
  }
}

async function showJob(id) {
  try {
    const j = await api(`/v1/admin/jobs/${id}`);
    $("#job-detail-title").textContent = `Job ${j.id}: ${j.kind}`;
    $("#job-detail-body").textContent = JSON.stringify(
      { state: j.state, attempts: `${j.attempts}/${j.max_attempts}`, last_error: j.last_error, payload: j.payload, run_at: j.run_at, worker: j.worker, finished_at: j.finished_at },
      null,
      2,
    );
    $("#job-detail").hidden = false;
    $("#job-detail-close").focus();
  } catch (e) {
    fail("jobs", e);
  }
}
$("#job-detail-close").addEventListener("click", () => ($("#job-detail").hidden = true));

async function jobAction(id, what) {
  try {
    if (what === "retry") await api(`/v1/admin/jobs/${id}/retry`, { method: "POST" });
    else await api(`/v1/admin/jobs/${id}`, { method: "DELETE" });
    state("jobs", `Job ${id}: ${what === "retry" ? "queued again" : "discarded"}.`);
    loadJobs();
  } catch (e) {
    fail("jobs", e);
  }
}

/** Bulk actions ask once more: a second click within 5 s confirms. */
function bulk(btn, what) {
  let armed = 0;
  const label = btn.textContent;
  btn.addEventListener("click", async () => {
    if (Date.now() - armed > 5000) {
      armed = Date.now();
      const f = jobFilter();
      btn.textContent = `Click again to ${what} every job matching ${JSON.stringify(f)}`;
      btn.dataset.armed = "true";
      setTimeout(() => {
        btn.textContent = label;
        delete btn.dataset.armed;
      }, 5000);
      return;
    }
    armed = 0;
    btn.textContent = label;
    delete btn.dataset.armed;
    try {
      const r = await api(`/v1/admin/jobs/${what}`, { method: "POST", body: jobFilter() });
      state("jobs", `${what === "retry" ? "Retried" : "Discarded"} ${r.affected} job(s).`);
      loadJobs();
    } catch (e) {
      fail("jobs", e);
    }
  });
}
bulk($("#jobs-retry"), "retry");
bulk($("#jobs-discard"), "discard");
$("#job-filter").addEventListener("submit", (ev) => {
  ev.preventDefault();
  loadJobs();
});

// ------------------------------------------------------------ schedules

async function loadSchedules() {
  try {
    const s = await api("/v1/admin/schedules");
    $("#schedules-body").replaceChildren(
      ...(s.items || []).map((x) =>
        el(
          "tr",
          { "data-testid": "schedule-row", "data-name": x.name },
          td(x.name),
          td(el("code", {}, x.cron)),
          td(x.job_kind),
          td(when(x.next_at)),
          td(when(x.last_run_at)),
          td(button("Run now", "schedule-run", () => runNow(x.name))),
        ),
      ),
    );
    state("schedules", "");
  } catch (e) {
    fail("schedules", e);
  }
}

async function runNow(name) {
  try {
    const r = await api(`/v1/admin/schedules/${encodeURIComponent(name)}/run`, { method: "POST" });
    // Reload the list first: it clears the section's message, and the
    // operator must see what "run now" did.
    await loadSchedules();
    state("schedules", `${name}: job ${r.job_id} queued.`);
    loadJobs();
  } catch (e) {
    fail("schedules", e);
  }
}

// ------------------------------------------------------------ dead letters

async function loadDeadLetters() {
  try {
    const d = await api("/v1/admin/dead-letters?limit=50");
    const items = d.items || [];
    $("#dlq-body").replaceChildren(
      ...items.map((x) => {
        const path = `/v1/admin/dead-letters/${encodeURIComponent(x.group)}/${x.partition}/${x.offset}`;
        return el(
          "tr",
          { "data-testid": "dlq-row" },
          td(x.group),
          td(x.partition),
          td(x.offset),
          td(x.error),
          td(when(x.at)),
          td(
            button("Inspect", "dlq-inspect", () => {
              $("#dlq-detail-body").textContent = `key: ${x.key}\nattempts: ${x.attempts}\n\n${x.payload}`;
              $("#dlq-detail").hidden = false;
              $("#dlq-detail-close").focus();
            }),
            " ",
            button("Replay", "dlq-replay", () => dlq(path + "/replay", "POST")),
            " ",
            button("Discard", "dlq-discard", () => dlq(path, "DELETE")),
          ),
        );
      }),
    );
    state("dead-letters", items.length ? `${items.length} dead letter(s)` : "No dead letters.");
  } catch (e) {
    fail("dead-letters", e);
  }
}
$("#dlq-detail-close").addEventListener("click", () => ($("#dlq-detail").hidden = true));

async function dlq(path, method) {
  try {
    await api(path, { method });
    loadDeadLetters();
  } catch (e) {
    fail("dead-letters", e);
  }
}

// ------------------------------------------------------------ cache, users, keys, audit

async function loadCache() {
  try {
    const c = await api("/v1/admin/cache");
    const pct = (r) => (r === null || r === undefined ? "—" : `${(r * 100).toFixed(1)}%`);
    $("#cache-total").textContent = `All stores: ${c.hits} hits, ${c.misses} misses`;
    $("#cache-body").replaceChildren(
      ...(c.stores || []).map((s) =>
        el(
          "tr",
          { "data-testid": "cache-row" },
          td(s.store),
          td(s.hits),
          td(s.misses),
          td(pct(s.hit_ratio)),
          td(
            button("Invalidate", "cache-invalidate", async () => {
              try {
                await api(`/v1/admin/cache/stores/${encodeURIComponent(s.store)}/invalidate`, { method: "POST" });
                state("cache", `${s.store}: invalidated.`);
                loadCache();
              } catch (e) {
                fail("cache", e);
              }
            }),
          ),
        ),
      ),
    );
  } catch (e) {
    fail("cache", e);
  }
}

async function loadUsers() {
  try {
    const users = await api("/v1/admin/users");
    $("#users-body").replaceChildren(
      ...users.map((u) => el("tr", { "data-testid": "user-row" }, td(u.username), td(u.role), td(u.disabled ? "no" : "yes"), td(when(u.created_at)))),
    );
  } catch (e) {
    fail("users", e);
  }
}

async function loadKeys() {
  try {
    const keys = await api("/v1/admin/keys");
    $("#keys-body").replaceChildren(
      ...keys.map((k) =>
        el(
          "tr",
          { "data-testid": "key-row" },
          td(k.prefix),
          td(k.name),
          td(k.role),
          td(k.store || "all"),
          td(when(k.last_used_at)),
          td(
            k.revoked_at
              ? "revoked"
              : button("Revoke", "key-revoke", async () => {
                  try {
                    await api(`/v1/admin/keys/${encodeURIComponent(k.prefix)}`, { method: "DELETE" });
                    loadKeys();
                  } catch (e) {
                    fail("keys", e);
                  }
                }),
          ),
        ),
      ),
    );
  } catch (e) {
    fail("keys", e);
  }
}

async function loadAudit() {
  try {
    const a = await api("/v1/admin/audit?limit=50");
    $("#audit-body").replaceChildren(
      ...(a.entries || []).map((x) => el("tr", { "data-testid": "audit-row" }, td(when(x.at)), td(x.actor), td(x.action), td(x.target), td(x.source))),
    );
  } catch (e) {
    fail("audit", e);
  }
}

function refreshAll() {
  loadJobs();
  loadSchedules();
  loadDeadLetters();
  loadCache();
}

startLive();
loadHistory();
refreshAll();
loadUsers();
loadKeys();
loadAudit();
setInterval(() => {
  if (!document.hidden) refreshAll();
}, 10000);
