// Access requests and approvals: what others asked of my department's datasets, and what I asked.
import { api, el, fmt, toast } from "./api.js";

export async function showAccess(state) {
  const [incoming, mine, grants] = await Promise.all([
    api("/api/v1/access/requests", { query: { box: "incoming" } }),
    api("/api/v1/access/requests", { query: { box: "mine" } }),
    api("/api/v1/access/grants"),
  ]);
  fill("access-incoming", incoming, (r) => r.state === "requested" ? [
    el("button", { type: "button", class: "approve", onclick: () => decide(state, r.id, "approve") }, "Approve"),
    el("button", { type: "button", class: "refuse", onclick: () => decide(state, r.id, "refuse") }, "Refuse"),
  ] : []);
  fill("access-mine", mine, () => []);
  fill("access-grants", grants, () => []);
  state.access = { incoming, mine, grants };
}

function fill(id, rows, actions) {
  const body = document.querySelector(`#${id} tbody`) || document.getElementById(id);
  const head = el("tr", {}, ["dataset", "consumer", "provider", "state", "purpose", "asked", ""].map((h) => el("th", {}, h)));
  body.replaceChildren(head, ...rows.map((r) => el("tr", { dataset: { id: r.id, state: r.state } },
    el("td", {}, r.dataset), el("td", {}, r.consumer), el("td", {}, r.provider),
    el("td", {}, el("span", { class: `status ${r.state}` }, r.state)), el("td", {}, r.purpose),
    el("td", {}, fmt(r.created_at)), el("td", {}, actions(r)))));
}

async function decide(state, id, action) {
  try {
    const r = await api(`/api/v1/access/requests/${id}/decision`, { method: "POST", body: { action } });
    toast(`${r.dataset} for ${r.consumer}: ${r.state}`);
    await showAccess(state);
  } catch (err) {
    toast(err.message);
  }
}
