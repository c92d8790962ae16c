// Operations: the events queue. The operator dispatches an event to a department; that department
// moves it along (in progress, closed); a closed event may be reopened.
import { api, el, fmt, toast } from "./api.js";

const MOVES = { dispatched: ["in_progress", "closed"], in_progress: ["closed"], closed: ["reopened"] };
const DISPATCHABLE = ["requested", "reopened", "dispatched", "in_progress"];
const LABEL = { in_progress: "Start", closed: "Close", reopened: "Reopen" };
let departments = null;

export async function showOps(state) {
  const filter = document.getElementById("ops-filter");
  const refresh = document.getElementById("ops-refresh");
  if (!refresh.dataset.bound) {
    refresh.dataset.bound = "1";
    refresh.addEventListener("click", () => showOps(state).catch((e) => toast(e.message)));
    filter.addEventListener("change", () => showOps(state).catch((e) => toast(e.message)));
  }
  if (state.config.admin && departments === null) {
    departments = (await api("/api/v1/departments")).map((d) => d.id);
  }
  const [events, counts] = await Promise.all([
    api("/api/v1/ops/events", { query: { status: filter.value, limit: 200 } }),
    api("/api/v1/ops/counts"),
  ]);
  document.getElementById("ops-counts").textContent =
    Object.entries(counts).map(([k, v]) => `${k}: ${v}`).join("  ·  ");
  const body = document.querySelector("#ops-table tbody");
  body.replaceChildren(...events.map((e) => row(state, e)));
  state.ops = events;
}

function row(state, e) {
  const actions = el("td", { class: "actions" });
  if (state.config.admin && DISPATCHABLE.includes(e.status)) {
    const pick = el("select", { "aria-label": "department" },
      departments.map((d) => el("option", d === e.department ? { selected: "" } : {}, d)));
    actions.append(pick, el("button", { type: "button", class: "dispatch",
      onclick: () => act(state, `/api/v1/ops/events/${e.id}/dispatch`, { department: pick.value }) }, "Dispatch"));
  }
  const mine = state.config.admin || e.department === state.config.department;
  for (const s of mine ? MOVES[e.status] || [] : []) {
    actions.append(el("button", { type: "button", class: `move-${s}`,
      onclick: () => act(state, `/api/v1/ops/events/${e.id}/status`, { status: s }) }, LABEL[s]));
  }
  return el("tr", { dataset: { id: e.id, status: e.status } },
    el("td", {}, el("a", { href: "#", onclick: (ev) => { ev.preventDefault(); detail(e.id); } }, e.title),
      el("div", { class: "hint" }, fmt(e.occurred_at || e.created_at))),
    el("td", {}, e.source), el("td", {}, e.district || ""),
    el("td", {}, el("span", { class: `status ${e.status}` }, e.status)),
    el("td", {}, e.department || ""), actions);
}

async function act(state, path, body) {
  try {
    const e = await api(path, { method: "POST", body });
    toast(`${e.title}: ${e.status}${e.department ? ` (${e.department})` : ""}`);
    await showOps(state);
  } catch (err) {
    toast(err.message);
  }
}

async function detail(id) {
  const e = await api(`/api/v1/ops/events/${id}`);
  const box = document.getElementById("ops-detail");
  box.replaceChildren(el("h3", {}, e.title), el("p", {}, e.description),
    el("ol", {}, e.history.map((h) => el("li", {},
      `${fmt(h.at)} ${h.by}: ${h.action} ${h.status_from || ""} → ${h.status_to}${h.department ? ` (${h.department})` : ""} ${h.note}`))));
}
