// The platform's figures: live numbers and small SVG charts, polled while the view is open.
import { api, el, fmt } from "./api.js";

let timer = null;
const rates = [];

export function stopFigures() { clearInterval(timer); timer = null; }

export async function showFigures(state) {
  await draw(state);
  stopFigures();
  timer = setInterval(() => draw(state).catch(() => stopFigures()), 3000);
}

async function draw(state) {
  const f = await api("/api/v1/map/figures");
  state.figures = f;
  const cards = [
    ["systems connected", f.systems_connected], ["departments", f.departments], ["datasets", f.datasets],
    ["total records", f.total_records], ["records today", f.records_today], ["data uses", f.data_uses],
    ["ingest rows/s", f.ingest_rows_per_s], ["ingest lag (s)", f.ingest_lag_s], ["rows waiting", f.pending_rows],
  ];
  document.getElementById("figure-cards").replaceChildren(...cards.map(([label, v]) =>
    el("div", { class: "card", dataset: { figure: label } }, el("div", { class: "value" }, fmt(v)), el("div", { class: "label" }, label))));
  bars(document.getElementById("chart-records"), f.new_records_per_day.map((d) => [d.day.slice(5), d.count]));
  bars(document.getElementById("chart-uses"), f.data_uses_per_day.map((d) => [d.day.slice(5), d.count]));
  rates.push([new Date().toLocaleTimeString("en-GB"), f.ingest_rows_per_s]);
  if (rates.length > 40) rates.shift();
  bars(document.getElementById("chart-rate"), rates);
}

const NS = "http://www.w3.org/2000/svg";
function svg(tag, attrs, text) {
  const e = document.createElementNS(NS, tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
}

// A bar chart of [label, value] pairs into a 420x160 SVG.
function bars(target, pairs) {
  const w = 420, h = 160, pad = 20;
  const top = Math.max(1, ...pairs.map((p) => p[1]));
  const bw = (w - 2 * pad) / Math.max(1, pairs.length);
  const out = [svg("text", { x: pad, y: 12, fill: "#91a0bd", "font-size": 10 }, `max ${fmt(top)}`)];
  pairs.forEach(([label, v], i) => {
    const bh = ((h - 2 * pad) * v) / top;
    out.push(svg("rect", { x: pad + i * bw + 1, y: h - pad - bh, width: Math.max(1, bw - 2), height: bh, fill: "#4fb3ff" },
      undefined));
    out[out.length - 1].append(svg("title", {}, `${label}: ${fmt(v)}`));
    if (i % Math.ceil(pairs.length / 7) === 0) {
      out.push(svg("text", { x: pad + i * bw, y: h - 5, fill: "#91a0bd", "font-size": 9 }, label));
    }
  });
  target.replaceChildren(...out);
}
