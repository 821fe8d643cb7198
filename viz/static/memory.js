// The memory panel: peak of one train or inference step predicted on fake tensors by the server
// (GET /api/memory), what the peak is made of, the largest batch for a budget, and the bytes each layer keeps
// for backward. It reads the model, resolution, batch and dtype from the page's main form.
import { byId, formParams } from "./dom.js";
import { fmtBytes } from "./format.js";
import { search } from "./tree.js";

function memoryParams() {
  const q = formParams();
  q.set("mode", byId("mem-mode").value);
  if (byId("mem-budget").value) q.set("budget_gib", byId("mem-budget").value);
  return q;
}

// The stacked bar of the peak and its legend.
function renderBreakdown(d) {
  const peak = d.predicted_peak_bytes;
  const bar = byId("mem-bar");
  const legend = byId("mem-legend");
  bar.replaceChildren();
  legend.replaceChildren();
  for (const [key, label] of d.categories) {  // [name, words], in order, from the server's one vocabulary
    const v = d.breakdown_bytes[key] || 0;
    const seg = document.createElement("span");
    seg.className = `seg seg-${key}`;
    seg.style.width = `${peak ? (100 * v) / peak : 0}%`;
    seg.title = `${label}: ${fmtBytes(v)}`;
    bar.append(seg);
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = `swatch seg-${key}`;
    li.append(sw, ` ${label} ${fmtBytes(v)}`);
    legend.append(li);
  }
}

function batchLine(d) {
  if (d.predicted_max_batch === undefined) return "";
  if (d.predicted_max_batch <= 0) return `Largest batch for ${d.budget_gib} GiB: none — batch 1 does not fit.`;
  return `Largest batch for ${d.budget_gib} GiB: ${d.predicted_max_batch} ` +
    `(peak ${fmtBytes(d.predicted_peak_at_max_bytes)}; batch ${d.predicted_max_batch + 1}: ` +
    `${fmtBytes(d.predicted_peak_at_next_bytes)}).`;
}

function layerRow(path, v, total) {
  const tr = document.createElement("tr");
  const name = document.createElement("td");
  const link = document.createElement("button");
  link.type = "button";
  link.className = "linkish";
  link.textContent = path || "(model)";
  link.title = "find this layer in the tree";
  link.addEventListener("click", () => search(path));
  name.append(link);
  const bytes = document.createElement("td");
  bytes.className = "num";
  bytes.textContent = fmtBytes(v);
  const share = document.createElement("td");
  share.className = "bar";
  const fill = document.createElement("span");
  fill.className = "fill";
  fill.style.width = `${total ? (100 * v) / total : 0}%`;
  share.append(fill);
  tr.append(name, bytes, share);
  return tr;
}

// The bytes each layer keeps for backward, largest first (the server sorts them).
function renderLayers(d) {
  const body = byId("mem-layers").querySelector("tbody");
  const entries = Object.entries(d.saved_for_backward_bytes || {});
  const total = entries.reduce((a, [, v]) => a + v, 0);
  body.replaceChildren(...entries.map(([path, v]) => layerRow(path, v, total)));
  byId("mem-layers-note").textContent = d.mode === "train"
    ? `${entries.length} layers keep ${fmtBytes(total)} for backward (a storage saved by two layers counts once, ` +
      "for the first)."
    : "Layers keep activations for backward only in training: switch the mode to train to list them.";
}

function renderMemory(d) {
  byId("mem-peak").textContent =
    `Predicted peak of one ${d.mode} step (batch ${d.batch_size}, ${d.img_size} px, ${d.dtype}): ` +
    `${fmtBytes(d.predicted_peak_bytes)}, reached during the ${d.peak_phase.replace("_", " ")}. ` +
    `Predicted in ${d.prediction_s.toFixed(1)} s.`;
  byId("mem-peak").title = d.quantity;
  renderBreakdown(d);
  byId("mem-batch").textContent = batchLine(d);
  renderLayers(d);
  byId("mem-result").hidden = false;
}

async function predict() {
  const out = byId("mem-status");
  out.textContent = "predicting on fake tensors…";
  out.classList.remove("error");
  try {
    const resp = await fetch(`/api/memory?${memoryParams()}`);
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
    renderMemory(data);
    out.textContent = "";
  } catch (err) {
    out.textContent = String(err.message || err);
    out.classList.add("error");
  }
}

export function initMemory() {
  byId("memory-form").addEventListener("submit", (e) => { e.preventDefault(); predict(); });
}
