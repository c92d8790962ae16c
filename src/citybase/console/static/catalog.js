// The catalog: search, a dataset's page (schema, coverage, a sample when readable), ask for access.
import { api, el, fmt, table, toast } from "./api.js";

export async function showCatalog(state) {
  const form = document.getElementById("catalog-form");
  if (!form.dataset.bound) {
    form.dataset.bound = "1";
    form.addEventListener("submit", (e) => { e.preventDefault(); search(state).catch((x) => toast(x.message)); });
  }
  await search(state);
}

async function search(state) {
  const q = document.getElementById("catalog-q").value.trim();
  const res = await api("/api/v1/catalog", { query: { q, rows: 100 } });
  document.getElementById("catalog-results").replaceChildren(...res.results.map((e) =>
    el("li", { dataset: { name: e.name }, onclick: () => entry(state, e.name).catch((x) => toast(x.message)) },
      el("strong", {}, e.title || e.name), el("div", { class: "hint" }, `${e.name} · ${e.provider} · ${e.sharing} · ${fmt(e.rows)} rows`))));
  state.catalog = res;
}

async function entry(state, name) {
  const e = await api(`/api/v1/catalog/${name}`);
  const box = document.getElementById("catalog-entry");
  const parts = [
    el("h2", { id: "entry-title" }, e.title || e.name),
    el("p", {}, e.abstract),
    table([{ code: e.code, provider: e.provider_name || e.provider, kind: e.kind, sharing: e.sharing, update: e.update_cycle }]),
    el("h3", {}, "Coverage"),
    table([{ rows: e.rows, from: e.start, to: e.end, "last update": e.last_update, bbox: e.bbox ? e.bbox.map((v) => v.toFixed(3)).join(", ") : "" }]),
    el("h3", {}, "Schema"),
    table(e.items.map((i) => ({ field: i.name, type: i.type, unit: i.unit, personal: i.personal, description: i.description }))),
    el("h3", {}, "Sample"),
  ];
  const sample = el("div", { id: "entry-sample" });
  parts.push(sample);
  box.replaceChildren(...parts);
  // Ask for rows only when they are ours to read: a refused request would log a console error.
  const c = state.config;
  const grants = await api("/api/v1/access/grants");
  const held = grants.some((g) => g.dataset === name && g.consumer === c.department);
  if (c.admin || e.provider === c.department || held) {
    const bbox = e.bbox || [-180, -90, 180, 90];
    const rows = await api(`/api/v1/data/${name}/bbox`, { query: { bbox: bbox.join(","), limit: 5 } });
    sample.replaceChildren(table(rows.rows, rows.columns.filter((col) => !col.startsWith("_") && col !== "geom").slice(0, 8)));
  } else if (e.sharing === "not_shared") {
    sample.replaceChildren(el("p", { class: "hint" }, "Not shared row by row: only its aggregates are available."));
  } else {
    const purpose = el("input", { id: "request-purpose", placeholder: "purpose of use", value: "city operations" });
    sample.replaceChildren(el("p", { class: "hint" }, "No rows for you yet: ask the provider for access."), purpose,
      el("button", { id: "request-access", type: "button", onclick: () => ask(name, purpose.value) }, "Request access"));
  }
}

async function ask(dataset, purpose) {
  try {
    const r = await api("/api/v1/access/requests", { method: "POST", body: { dataset, purpose } });
    toast(`requested ${dataset}: ${r.state}`);
    document.getElementById("entry-sample").replaceChildren(el("p", { id: "request-sent", class: "ok" }, `Requested: ${r.state}`));
  } catch (err) {
    toast(err.message);
  }
}
