// charts.js: small SVG charts of our own (bars and lines), enough for
// the manager's per-hour figures and the operator's live series. Drawn
// with DOM calls (no innerHTML, no inline style: the CSP allows neither),
// coloured by classes from app.css.

const NS = "http://www.w3.org/2000/svg";

function node(tag, attrs = {}, text) {
  const n = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
  if (text !== undefined) n.textContent = text;
  return n;
}

/** A round step for an axis up to `max`. */
function niceMax(max) {
  if (!(max > 0)) return 1;
  const p = 10 ** Math.floor(Math.log10(max));
  for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= max) return m * p;
  return 10 * p;
}

const fmt = (v) => (Math.abs(v) >= 100 || Number.isInteger(v) ? String(Math.round(v)) : v.toFixed(v < 1 ? 2 : 1));

/**
 * Bars: items = [{label, value}]. Returns an <svg> with a <title>.
 */
export function barChart(items, { title = "", width = 640, height = 200 } = {}) {
  const pad = { l: 36, r: 8, t: 8, b: 22 };
  const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title });
  svg.append(node("title", {}, title));
  const max = niceMax(Math.max(0, ...items.map((i) => i.value || 0)));
  const w = (width - pad.l - pad.r) / Math.max(1, items.length);
  const y = (v) => height - pad.b - ((height - pad.t - pad.b) * v) / max;
  for (const f of [0, 0.5, 1]) {
    svg.append(node("line", { x1: pad.l, x2: width - pad.r, y1: y(max * f), y2: y(max * f), class: f ? "grid" : "axis" }));
    svg.append(node("text", { x: pad.l - 4, y: y(max * f) + 4, "text-anchor": "end" }, fmt(max * f)));
  }
  items.forEach((it, i) => {
    const v = it.value || 0;
    const r = node("rect", { x: pad.l + i * w + 1, y: y(v), width: Math.max(1, w - 2), height: Math.max(0, y(0) - y(v)), class: "bar" });
    r.append(node("title", {}, `${it.label}: ${fmt(v)}`));
    svg.append(r);
    if (items.length <= 24 && (items.length <= 12 || i % 2 === 0))
      svg.append(node("text", { x: pad.l + i * w + w / 2, y: height - 6, "text-anchor": "middle" }, it.label));
  });
  return svg;
}

/**
 * Lines over time: series = [{name, values: [number|null]}], t = [epoch ms].
 * Nulls break a line. Returns an <svg>; `legend` lists the series.
 */
export function lineChart(t, series, { title = "", width = 480, height = 160, max: fixedMax } = {}) {
  const pad = { l: 40, r: 8, t: 8, b: 20 };
  const svg = node("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": title });
  svg.append(node("title", {}, title));
  const all = series.flatMap((s) => s.values).filter((v) => typeof v === "number" && isFinite(v));
  const max = fixedMax ?? niceMax(Math.max(0, ...all));
  const t0 = t.length ? t[0] : 0;
  const t1 = t.length ? t[t.length - 1] : 1;
  const x = (ms) => pad.l + ((width - pad.l - pad.r) * (ms - t0)) / Math.max(1, t1 - t0);
  const y = (v) => height - pad.b - ((height - pad.t - pad.b) * Math.min(v, max)) / max;
  for (const f of [0, 0.5, 1]) {
    svg.append(node("line", { x1: pad.l, x2: width - pad.r, y1: y(max * f), y2: y(max * f), class: f ? "grid" : "axis" }));
    svg.append(node("text", { x: pad.l - 4, y: y(max * f) + 4, "text-anchor": "end" }, fmt(max * f)));
  }
  if (t.length > 1) {
    const span = Math.round((t1 - t0) / 1000);
    svg.append(node("text", { x: pad.l, y: height - 4 }, span >= 7200 ? `${Math.round(span / 3600)} h ago` : `${span} s ago`));
    svg.append(node("text", { x: width - pad.r, y: height - 4, "text-anchor": "end" }, "now"));
  }
  series.forEach((s, k) => {
    let d = "";
    let pen = false;
    s.values.forEach((v, i) => {
      if (typeof v !== "number" || !isFinite(v) || t[i] === undefined) {
        pen = false;
        return;
      }
      d += `${pen ? "L" : "M"}${x(t[i]).toFixed(1)},${y(v).toFixed(1)}`;
      pen = true;
    });
    if (d) svg.append(node("path", { d, class: `s${k % 3}`, "data-series": s.name }));
  });
  return svg;
}

/** A legend line for `series` (same colour classes). */
export function legend(series) {
  const p = document.createElement("p");
  p.className = "legend";
  series.forEach((s, k) => {
    const span = document.createElement("span");
    span.className = `k${k % 3}`;
    span.textContent = `■ ${s.name}  `;
    p.append(span);
  });
  return p;
}
