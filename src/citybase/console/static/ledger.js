// The ledger explorer: the latest signed checkpoint, and a batch's inclusion proof verified here,
// in the page (RFC 6962/9162 hashing with WebCrypto's SHA-256), against the checkpoint's root.
import { authHeaders, el, toast } from "./api.js";

const b64 = (s) => Uint8Array.from(atob(s), (c) => c.charCodeAt(0));
const hex = (u) => Array.from(u, (b) => b.toString(16).padStart(2, "0")).join("");

async function sha256(...parts) {
  const n = parts.reduce((s, p) => s + p.length, 0);
  const buf = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { buf.set(p, o); o += p.length; }
  return new Uint8Array(await crypto.subtle.digest("SHA-256", buf));
}
const leafHash = (data) => sha256(Uint8Array.of(0), data);
const nodeHash = (l, r) => sha256(Uint8Array.of(1), l, r);

// RFC 9162 2.1.3.2: the root an inclusion proof leads to.
export async function rootFromInclusion(index, size, leaf, proof) {
  if (index >= size) throw new Error(`index ${index} is not in a tree of size ${size}`);
  let fn = index, sn = size - 1, r = leaf;
  for (const p of proof) {
    if (sn === 0) throw new Error("inclusion proof is too long");
    if (fn % 2 === 1 || fn === sn) {
      r = await nodeHash(p, r);
      while (fn % 2 === 0 && fn !== 0) { fn = Math.floor(fn / 2); sn = Math.floor(sn / 2); }
    } else {
      r = await nodeHash(r, p);
    }
    fn = Math.floor(fn / 2); sn = Math.floor(sn / 2);
  }
  if (sn !== 0) throw new Error("inclusion proof is too short");
  return r;
}

async function get(path) {
  const res = await fetch(path, { headers: authHeaders() });
  const text = await res.text();
  if (!res.ok) throw new Error(`${res.status}: ${text.slice(0, 200)}`);
  return text;
}

export async function showLedger(state) {
  const form = document.getElementById("ledger-form");
  if (!form.dataset.bound) {
    form.dataset.bound = "1";
    form.addEventListener("submit", (e) => { e.preventDefault(); verify(state).catch((x) => toast(x.message)); });
    document.getElementById("ledger-refresh").addEventListener("click", () => checkpoint().catch((x) => toast(x.message)));
  }
  await checkpoint();
}

async function checkpoint() {
  const box = document.getElementById("ledger-checkpoint");
  try {
    box.textContent = await get("/ledger/checkpoint");
  } catch (e) {
    box.textContent = `No ledger here (${e.message}).`;
  }
}

async function verify(state) {
  const key = document.getElementById("ledger-key").value.trim();
  const out = document.getElementById("ledger-result");
  const q = /^\d+$/.test(key) ? `index=${key}` : `key=${encodeURIComponent(key)}`;
  const bundle = JSON.parse(await get(`/ledger/proof?${q}`));
  const lines = (bundle.checkpoint || "").split("\n");
  const root = b64(lines[2] || "");
  const size = Number(lines[1]);
  const leaf = await leafHash(new TextEncoder().encode(bundle.entry));
  const checks = [];
  checks.push(["leaf hash matches the entry", hex(leaf) === hex(b64(bundle.leaf_hash))]);
  checks.push(["proof is for the checkpoint's size", size === bundle.size]);
  let ok = false;
  try {
    const got = await rootFromInclusion(bundle.index, bundle.size, leaf, bundle.inclusion.map(b64));
    ok = hex(got) === hex(root);
  } catch (e) {
    checks.push([e.message, false]);
  }
  checks.push(["inclusion proof leads to the checkpoint's root", ok]);
  const verified = checks.every((c) => c[1]);
  out.replaceChildren(
    el("p", { id: "ledger-verdict", class: verified ? "ok" : "error" },
      verified ? `Verified: entry ${bundle.index} is in the log of size ${bundle.size}.` : "NOT verified."),
    el("ul", {}, checks.map(([what, good]) => el("li", { class: good ? "ok" : "error" }, `${good ? "✓" : "✗"} ${what}`))),
    el("p", { class: "hint" }, "The checkpoint's signature is checked by `citybase ledger verify` (Ed25519)."),
    el("pre", {}, bundle.entry));
  state.ledger = { verified, bundle };
}
