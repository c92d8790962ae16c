// The city map: the city model as the base map (no internet basemap), events as heat and vector
// tiles, live sensors coloured by value, moving vehicles, a time slider that replays any window,
// and "everything about this place" on click.
import { api, authHeaders, el, fmt, table, toast } from "./api.js";

const AREAS = [
  { level: "district", fill: "#1d3b66", line: "#4fb3ff", width: 2, zoom: 11 },
  { level: "grid", fill: "#1a2a44", line: "#3b4f78", width: 0.5, zoom: 13 },
  { level: "building", fill: "#7a6a4f", line: "#c9a46b", width: 0.5, zoom: 16 },
];
const CLICKABLE = ["building-fill", "grid-fill", "district-fill"];

// Stored times are UTC; the config gives them without a zone.
const parseUtc = (s) => new Date(/[zZ]|[+-]\d\d:\d\d$/.test(s) ? s : `${s}Z`);
const iso = (d) => d.toISOString();

export async function startMap(state, library) {
  const c = state.config;
  // The base map's data is fetched while MapLibre loads and sets up.
  const levels = AREAS.filter((a) => c.levels.includes(a.level));
  const areaData = levels.map((a) => api(`/api/v1/map/areas/${a.level}`, { query: { zoom: a.zoom } }));
  const shapes = c.datasets.filter((d) => d.layer === "shapes" && d.visible);
  const shapeData = shapes.map((d) => api(`/api/v1/map/rows/${d.name}`, { query: { bbox: c.bounds.join(","), zoom: 14, limit: 50000 } }));
  await library;
  const map = new maplibregl.Map({
    container: "map",
    style: { version: 8, sources: {}, layers: [{ id: "background", type: "background", paint: { "background-color": "#0b1220" } }] },
    bounds: c.bounds,
    fitBoundsOptions: { padding: 20, animate: false },
    attributionControl: false,
    transformRequest: (url) => (url.startsWith(`${location.origin}/api/`) ? { url, headers: authHeaders() } : { url }),
  });
  window.citybaseMap = map;
  map.addControl(new maplibregl.NavigationControl({ showCompass: false }));
  await new Promise((resolve) => map.on("load", resolve));
  const marks = (state.marks = { load: performance.now() });
  const visible = (layer) => c.datasets.filter((d) => d.layer === layer && d.visible);
  const m = { map, state, toggles: [], heat: null, tracks: visible("tracks")[0], sensors: visible("sensors") };
  m.heat = visible("heat").find((d) => d.name === "hotline_events") || visible("heat")[0];
  state.mapState = m;

  setupTime(m);
  addLiveLayers(m);
  const live = refreshTime(m);  // its requests run while the base map is added below the live layers
  const below = map.getStyle().layers[1]?.id;
  for (const [i, a] of levels.entries()) addArea(m, a, await areaData[i], below);
  for (const [i, d] of shapes.entries()) addShapes(m, d, await shapeData[i], below);
  for (const a of AREAS) {
    if (map.getLayer(`${a.level}-line`)) map.moveLayer(`${a.level}-line`);
  }
  marks.areas = performance.now();
  map.addSource("selected", { type: "geojson", data: { type: "FeatureCollection", features: [] } });
  map.addLayer({ id: "selected-line", type: "line", source: "selected", paint: { "line-color": "#ffd84f", "line-width": 3 } });
  buildToggles(m);
  map.on("click", (e) => clickPlace(m, e));
  for (const id of CLICKABLE) {
    if (!map.getLayer(id)) continue;
    map.on("mouseenter", id, () => { map.getCanvas().style.cursor = "pointer"; });
    map.on("mouseleave", id, () => { map.getCanvas().style.cursor = ""; });
  }
  await live;
  marks.live = performance.now();
  await new Promise((resolve) => { if (map.loaded()) resolve(); else map.once("idle", resolve); });
  marks.idle = performance.now();
  state.mapReady = true;
  return map;
}

function addArea(m, a, data, before) {
  m.map.addSource(a.level, { type: "geojson", data });
  m.map.addLayer({ id: `${a.level}-fill`, type: "fill", source: a.level,
    paint: { "fill-color": a.fill, "fill-opacity": a.level === "building" ? 0.8 : 0.35 } }, before);
  m.map.addLayer({ id: `${a.level}-line`, type: "line", source: a.level,
    paint: { "line-color": a.line, "line-width": a.width } }, before);
  m.toggles.unshift({ label: `${a.level}s`, layers: [`${a.level}-fill`, `${a.level}-line`] });
}

function addShapes(m, d, data, before) {
  m.map.addSource(`shapes-${d.name}`, { type: "geojson", data });
  m.map.addLayer({ id: `shapes-${d.name}`, type: "line", source: `shapes-${d.name}`,
    paint: { "line-color": "#8ea3c7", "line-width": ["interpolate", ["linear"], ["zoom"], 10, 0.5, 16, 3] } }, before);
  m.toggles.unshift({ label: d.title || d.name, layers: [`shapes-${d.name}`] });
}

function addLiveLayers(m) {
  const map = m.map;
  const empty = { type: "FeatureCollection", features: [] };
  if (m.heat) {
    map.addSource("heat", { type: "geojson", data: empty });
    map.addLayer({ id: "heat", type: "heatmap", source: "heat", maxzoom: 16,
      paint: { "heatmap-weight": ["get", "weight"], "heatmap-radius": ["interpolate", ["linear"], ["zoom"], 10, 12, 15, 40],
        "heatmap-opacity": 0.8, "heatmap-intensity": 1.5,
        "heatmap-color": ["interpolate", ["linear"], ["heatmap-density"], 0, "rgba(0,0,0,0)", 0.2, "#2c7bb6",
          0.4, "#abd9e9", 0.6, "#ffffbf", 0.8, "#fdae61", 1, "#d7191c"] } });
    // Tiles only from zoom 12 (the heat map covers the city below); setTiles waits for the source
    // to be idle, since aborting tiles in flight makes MapLibre log an AbortError.
    const { start, end } = windowOf(m);
    m.tiles = tileUrl(m, start, end);
    // 512-pixel tiles: a quarter of the requests, each reading the same window of rows.
    map.addSource("events", { type: "vector", tiles: [m.tiles], tileSize: 512, minzoom: 11, maxzoom: 15 });
    map.addLayer({ id: "events", type: "circle", source: "events", "source-layer": "points", minzoom: 12,
      paint: { "circle-color": "#ff8c42", "circle-radius": ["interpolate", ["linear"], ["get", "n"], 1, 3, 50, 10],
        "circle-stroke-color": "#1b1b1b", "circle-stroke-width": 1 } });
    m.toggles.push({ label: `${m.heat.title || m.heat.name} (heat)`, layers: ["heat", "events"] });
  }
  for (const s of m.sensors) {
    const id = `sensors-${s.name}`;
    map.addSource(id, { type: "geojson", data: empty });
    map.addLayer({ id, type: "circle", source: id,
      paint: { "circle-radius": 7, "circle-stroke-color": "#fff", "circle-stroke-width": 1,
        "circle-color": ["interpolate", ["linear"], ["coalesce", ["get", "level"], 0], 0, "#2ecc71", 0.5, "#f1c40f", 1, "#e74c3c"] } });
    m.toggles.push({ label: `${s.title || s.name} (${s.value_field})`, layers: [id] });
  }
  if (m.tracks) {
    map.addSource("vehicles", { type: "geojson", data: empty });
    map.addLayer({ id: "vehicles", type: "circle", source: "vehicles",
      paint: { "circle-radius": 4, "circle-color": "#4fffd2", "circle-stroke-color": "#003", "circle-stroke-width": 1 } });
    m.toggles.push({ label: `${m.tracks.title || m.tracks.name}`, layers: ["vehicles"] });
  }
}

function tileUrl(m, start, end) {
  const q = new URLSearchParams();
  if (start) q.set("start", iso(start));
  if (end) q.set("end", iso(end));
  return `${location.origin}/api/v1/map/tiles/${m.heat.name}/{z}/{x}/{y}.pbf?${q}`;
}

function setTiles(m, url) {
  m.wantTiles = url;
  if (m.tilesWaiting) return;
  const apply = () => {
    const src = m.map.getSource("events");
    if (!src.loaded()) { m.map.once("idle", apply); return; }
    m.tilesWaiting = false;
    if (m.wantTiles !== m.tiles) { m.tiles = m.wantTiles; src.setTiles([m.tiles]); }
  };
  m.tilesWaiting = true;
  apply();
}

function buildToggles(m) {
  const box = document.getElementById("layers");
  for (const t of m.toggles) {
    const input = el("input", { type: "checkbox", checked: "" });
    input.addEventListener("change", () => {
      for (const id of t.layers) m.map.setLayoutProperty(id, "visibility", input.checked ? "visible" : "none");
    });
    box.append(el("label", {}, input, ` ${t.label}`));
  }
}

// -- time ----------------------------------------------------------------------------------------

function setupTime(m) {
  const c = m.state.config;
  const slider = document.getElementById("time-slider");
  const len = document.getElementById("window-len");
  m.t0 = c.start ? parseUtc(c.start).getTime() : Date.now() - 86400e3;
  m.t1 = c.end ? parseUtc(c.end).getTime() + 1000 : Date.now();
  let timer = null;
  const later = () => { clearTimeout(timer); timer = setTimeout(() => refreshTime(m).catch((e) => toast(e.message)), 120); };
  slider.addEventListener("input", later);
  len.addEventListener("change", later);
  const play = document.getElementById("play");
  play.addEventListener("click", () => {
    if (m.playing) { clearInterval(m.playing); m.playing = null; play.textContent = "Play"; return; }
    if (Number(slider.value) >= 1000) slider.value = 0;
    play.textContent = "Pause";
    m.playing = setInterval(() => {
      slider.value = Math.min(1000, Number(slider.value) + 5);
      refreshTime(m).catch((e) => toast(e.message));
      if (Number(slider.value) >= 1000) play.click();
    }, 1000);
  });
}

export function windowOf(m) {
  const v = Number(document.getElementById("time-slider").value) / 1000;
  const end = new Date(m.t0 + (m.t1 - m.t0) * v);
  const start = new Date(end.getTime() - Number(document.getElementById("window-len").value) * 1000);
  return { start, end };
}

async function refreshTime(m) {
  const { start, end } = windowOf(m);
  const c = m.state.config;
  const f = new Intl.DateTimeFormat("en-GB", { timeZone: c.timezone, dateStyle: "medium", timeStyle: "short" });
  document.getElementById("time-label").textContent = `${f.format(start)} → ${f.format(end)} (${c.timezone})`;
  const jobs = [];
  if (m.heat) {
    jobs.push(api(`/api/v1/map/heat/${m.heat.name}`, { query: { start: iso(start), end: iso(end), resolution: 8 } })
      .then((fc) => {
        m.map.getSource("heat").setData(fc);
        const total = fc.features.reduce((s, x) => s + x.properties.count, 0);
        m.state.heatTotal = total;
        document.getElementById("heat-label").textContent = `${fmt(total)} ${m.heat.name} rows in the window`;
      }));
    setTiles(m, tileUrl(m, start, end));
  }
  for (const s of m.sensors) {
    jobs.push(api(`/api/v1/map/sensors/${s.name}`, { query: { at: iso(end), lookback: 6 } }).then((fc) => {
      const lo = fc.min ?? 0;
      const span = (fc.max ?? 1) - lo || 1;
      for (const ft of fc.features) ft.properties.level = ft.properties.value === null ? null : (ft.properties.value - lo) / span;
      m.map.getSource(`sensors-${s.name}`).setData(fc);
    }));
  }
  if (m.tracks) {
    const secs = Math.min(3600, Number(document.getElementById("window-len").value));
    jobs.push(api(`/api/v1/map/vehicles/${m.tracks.name}`, { query: { at: iso(end), window: secs } })
      .then((fc) => { m.map.getSource("vehicles").setData(fc); m.state.vehicles = fc.features.length; }));
  }
  await Promise.all(jobs);
  m.state.window = { start: iso(start), end: iso(end) };
  m.state.refreshes = (m.state.refreshes || 0) + 1;
}

// -- everything about a place --------------------------------------------------------------------

async function clickPlace(m, e) {
  const layers = CLICKABLE.filter((id) => m.map.getLayer(id) && m.map.getLayoutProperty(id, "visibility") !== "none");
  const hits = m.map.queryRenderedFeatures(e.point, { layers });
  for (const id of CLICKABLE) {
    const f = hits.find((h) => h.layer.id === id);
    if (f) { await showPlace(m, f.properties.level, f.properties.code); return; }
  }
}

export async function showPlace(m, level, code) {
  const box = document.getElementById("place");
  box.replaceChildren(el("p", { class: "hint" }, `Loading ${level} ${code}…`));
  const { start, end } = windowOf(m);
  const r = await api(`/api/v1/map/place/${level}/${encodeURIComponent(code)}`,
    { query: { start: iso(start), end: iso(end), limit: 5 } });
  if (r.geometry) m.map.getSource("selected").setData({ type: "Feature", geometry: r.geometry, properties: {} });
  const parts = [el("h2", { id: "place-title" }, `${r.place.name || ""} ${r.place.level} ${r.place.code}`)];
  parts.push(el("p", { class: "hint" }, "Rows in the time window; datasets without time: all rows."));
  parts.push(table(r.datasets.map((d) => ({ dataset: d.dataset, kind: d.kind, rows: d.rows })), ["dataset", "kind", "rows"]));
  for (const d of r.datasets.filter((x) => x.sample.length)) {
    const cols = d.columns.slice(0, 5);
    parts.push(el("h3", {}, d.dataset), table(d.sample, cols));
  }
  if (r.hidden.length) parts.push(el("p", { class: "hint", id: "place-hidden" }, `Not visible to you: ${r.hidden.join(", ")}`));
  box.replaceChildren(...parts);
  m.state.place = r;
  return r;
}
