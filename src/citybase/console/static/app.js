// The console's entry point: sign-in, tabs, and the views (each a module of its own).
import { api, clearKey, key, setKey, toast } from "./api.js";
import { startMap } from "./map.js";
import { showOps } from "./ops.js";
import { showCatalog } from "./catalog.js";
import { showAccess } from "./access.js";
import { showLedger } from "./ledger.js";
import { showFigures, stopFigures } from "./figures.js";

// MapLibre (900 kB) is parsed while the sign-in and the first requests run, not before them.
const mapLibrary = new Promise((resolve, reject) => {
  const s = document.createElement("script");
  s.src = "/console/vendor/maplibre-gl.js";
  s.onload = resolve;
  s.onerror = () => reject(new Error("could not load MapLibre GL JS"));
  document.head.append(s);
});

const views = { ops: showOps, catalog: showCatalog, access: showAccess, ledger: showLedger, figures: showFigures };
const state = { config: null, view: "map" };
window.citybase = state;

async function signIn() {
  const dialog = document.getElementById("signin");
  for (;;) {
    if (key()) {
      try {
        state.config = await api("/api/v1/map/config");
        state.configAt = performance.now();
        return;
      } catch (e) {
        clearKey();
        document.getElementById("signin-error").textContent =
          e.status === 401 ? "That key is not valid." : `Could not sign in (${e.message}).`;
      }
    }
    dialog.showModal();
    await new Promise((resolve) => {
      document.getElementById("signin-form").addEventListener("submit", resolve, { once: true });
    });
    setKey(document.getElementById("signin-key").value.trim());
  }
}

function show(view) {
  state.view = view;
  for (const b of document.querySelectorAll("#tabs button")) b.classList.toggle("active", b.dataset.view === view);
  for (const s of document.querySelectorAll(".view")) s.classList.toggle("active", s.id === `view-${view}`);
  if (view !== "figures") stopFigures();
  if (view === "map" && state.map) state.map.resize();
  const fn = views[view];
  if (fn) fn(state).catch((e) => toast(e.message));
}

async function main() {
  await signIn();
  const c = state.config;
  document.getElementById("city-name").textContent = c.city;
  document.getElementById("whoami").textContent = `${c.department}${c.admin ? " (operator)" : ""}`;
  document.getElementById("signout").addEventListener("click", () => { clearKey(); location.reload(); });
  for (const b of document.querySelectorAll("#tabs button")) b.addEventListener("click", () => show(b.dataset.view));
  state.map = await startMap(state, mapLibrary);
  document.body.dataset.ready = "1";
}

main().catch((e) => toast(e.message, 10000));
