// Time-series charts drawn as plain SVG: no library, nothing to build. One chart: several series over a
// shared time axis, horizontal reference lines (a target, min/max replicas) and event markers (scaling),
// each marker carrying its reason as a tooltip.
"use strict";

const SVG_NS = "http://www.w3.org/2000/svg";
const CHART_W = 640, CHART_H = 180, PAD_L = 48, PAD_R = 8, PAD_T = 8, PAD_B = 22;

function svgEl(name, attrs, text) {
  const el = document.createElementNS(SVG_NS, name);
  for (const [k, v] of Object.entries(attrs || {})) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

function niceMax(value) {
  // 0.83 -> 1, 7 -> 10, 230 -> 250: an axis top a reader can take in at a glance.
  if (!(value > 0)) return 1;
  const step = Math.pow(10, Math.floor(Math.log10(value)));
  for (const m of [1, 2, 2.5, 5, 10]) if (value <= m * step) return m * step;
  return 10 * step;
}

function formatNumber(v) {
  if (v === null || v === undefined || Number.isNaN(v)) return "–";
  if (typeof v !== "number") return String(v);  // an event's before/after may be a status
  if (Math.abs(v) >= 100 || Number.isInteger(v)) return String(Math.round(v));
  return v.toFixed(Math.abs(v) >= 10 ? 1 : 2);
}

function timeLabel(seconds, spanS) {
  const d = new Date(seconds * 1000);
  const hm = d.toTimeString().slice(0, 5);
  return spanS > 2 * 86400 ? `${d.getMonth() + 1}/${d.getDate()} ${hm}` : hm;
}

// spec: {id, title, unit, times: [s], x0, x1, series: [{name, color, values: [num|null]}],
//        refs: [{name, color, values: [num|null]}], events: [{at, label}]}
function drawChart(spec) {
  const box = document.createElement("figure");
  box.className = "chart";
  box.id = spec.id;
  box.appendChild(Object.assign(document.createElement("h3"), {textContent: spec.title}));
  const svg = svgEl("svg", {viewBox: `0 0 ${CHART_W} ${CHART_H}`, role: "img", "aria-label": spec.title});
  const all = [...spec.series, ...(spec.refs || [])].flatMap(s => s.values).filter(v => v !== null && v !== undefined);
  const top = niceMax(Math.max(0, ...all));
  const span = Math.max(1, spec.x1 - spec.x0);
  const x = t => PAD_L + (t - spec.x0) / span * (CHART_W - PAD_L - PAD_R);
  const y = v => PAD_T + (1 - v / top) * (CHART_H - PAD_T - PAD_B);
  for (const frac of [0, 0.5, 1]) {
    const v = top * frac;
    svg.appendChild(svgEl("line", {x1: PAD_L, x2: CHART_W - PAD_R, y1: y(v), y2: y(v), stroke: "#e4e7eb"}));
    svg.appendChild(svgEl("text", {x: PAD_L - 4, y: y(v) + 4, "text-anchor": "end", "font-size": 10,
                                   fill: "#66707c"}, formatNumber(v)));
  }
  for (const frac of [0, 0.5, 1]) {
    const t = spec.x0 + span * frac;
    svg.appendChild(svgEl("text", {x: x(t), y: CHART_H - 6, "font-size": 10, fill: "#66707c",
                                   "text-anchor": frac === 0 ? "start" : frac === 1 ? "end" : "middle"},
                          timeLabel(t, span)));
  }
  // Many events (a week of hourly scaling) would hide the lines behind them: the more, the fainter.
  const events = spec.events || [], opacity = Math.min(1, 20 / Math.max(1, events.length)).toFixed(2);
  for (const ev of events) {
    const marker = svgEl("line", {x1: x(ev.at), x2: x(ev.at), y1: PAD_T, y2: CHART_H - PAD_B, stroke: "#c2410c",
                                  "stroke-dasharray": "3 3", "stroke-opacity": opacity, class: "event-marker"});
    marker.appendChild(svgEl("title", {}, ev.label));
    svg.appendChild(marker);
  }
  const line = (s, dashed) => {
    // A missing value (no completions in that bucket) breaks the line rather than drawing it at zero.
    // A point with no neighbour (the first bucket of a new deployment) gets a dot, or it would not show.
    let path = "", pen = false;
    s.values.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      const px = x(spec.times[i]).toFixed(1), py = y(v).toFixed(1), next = s.values[i + 1];
      path += `${pen ? "L" : "M"}${px},${py}`;
      if (!pen && (next === null || next === undefined) && !dashed) {
        svg.appendChild(svgEl("circle", {cx: px, cy: py, r: 2.5, fill: s.color}));
      }
      pen = true;
    });
    if (!path) return;
    const el = svgEl("path", {d: path, fill: "none", stroke: s.color, "stroke-width": dashed ? 1 : 1.8,
                              "data-series": s.name});
    if (dashed) el.setAttribute("stroke-dasharray", "6 4");
    svg.appendChild(el);
  };
  (spec.refs || []).forEach(s => line(s, true));
  spec.series.forEach(s => line(s, false));
  box.appendChild(svg);
  const legend = document.createElement("figcaption");
  legend.className = "legend";
  for (const s of [...spec.series, ...(spec.refs || [])]) {
    const known = s.values.filter(v => v !== null && v !== undefined);
    const item = document.createElement("span");
    item.dataset.series = s.name;
    item.dataset.last = known.length ? known[known.length - 1] : "";
    item.dataset.max = known.length ? Math.max(...known) : "";
    const swatch = document.createElement("i");
    swatch.style.background = s.color;
    item.append(swatch, `${s.name} ${formatNumber(known[known.length - 1])}${spec.unit || ""}` +
                (known.length ? ` (max ${formatNumber(Math.max(...known))})` : ""));
    legend.appendChild(item);
  }
  box.appendChild(legend);
  return box;
}

window.charts = {drawChart, formatNumber, niceMax};
