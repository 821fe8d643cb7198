// The memory panel: peak of one train or inference step predicted on fake tensors by the server
// (GET /api/memory), what the peak is made of, the largest batch for a budget, and the bytes each layer keeps
// for backward. It reads the model, resolution, batch and dtype from the page's main form.
"use strict";

const MEM_CATEGORIES = [
  ["params", "parameters"], ["buffers", "buffers"], ["grads", "gradients"],
  ["optimizer_state", "optimizer state"], ["activations", "activations"], ["temporaries", "temporaries"],
];

function memBytes(b) {
  if (b === null || b === undefined) return "";
  const units = [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]];
  for (const [u, d] of units) if (Math.abs(b) >= d) return `${(b / d).toFixed(2)} ${u}`;
  return `${b} B`;
}

function memEl(id) { return document.getElementById(id); }

function memParams() {
  const q = new URLSearchParams();
  q.set("model", memEl("model").value.trim());
  if (memEl("img").value) q.set("img_size", memEl("img").value);
  q.set("batch_size", memEl("batch").value || "1");
  q.set("dtype", memEl("dtype").value);
  q.set("mode", memEl("mem-mode").value);
  if (memEl("mem-budget").value) q.set("budget_gib", memEl("mem-budget").value);
  return q;
}

function memRender(d) {
  const peak = d.predicted_peak_bytes;
  memEl("mem-peak").textContent =
    `Predicted peak of one ${d.mode} step (batch ${d.batch_size}, ${d.img_size} px, ${d.dtype}): ` +
    `${memBytes(peak)}, reached during the ${d.peak_phase.replace("_", " ")}. ` +
    `Predicted in ${d.prediction_s.toFixed(1)} s.`;
  memEl("mem-peak").title = d.quantity;
  const bar = memEl("mem-bar");
  const legend = memEl("mem-legend");
  bar.replaceChildren();
  legend.replaceChildren();
  for (const [key, label] of MEM_CATEGORIES) {
    const v = d.breakdown_bytes[key] || 0;
    const seg = document.createElement("span");
    seg.className = `seg seg-${key}`;
    seg.style.width = `${peak ? (100 * v) / peak : 0}%`;
    seg.title = `${label}: ${memBytes(v)}`;
    bar.append(seg);
    const li = document.createElement("li");
    const sw = document.createElement("span");
    sw.className = `swatch seg-${key}`;
    li.append(sw, ` ${label} ${memBytes(v)}`);
    legend.append(li);
  }
  const batchLine = memEl("mem-batch");
  if (d.predicted_max_batch !== undefined) {
    batchLine.textContent = d.predicted_max_batch > 0
      ? `Largest batch for ${d.budget_gib} GiB: ${d.predicted_max_batch} ` +
        `(peak ${memBytes(d.predicted_peak_at_max_bytes)}; batch ${d.predicted_max_batch + 1}: ` +
        `${memBytes(d.predicted_peak_at_next_bytes)}).`
      : `Largest batch for ${d.budget_gib} GiB: none — batch 1 does not fit.`;
  } else {
    batchLine.textContent = "";
  }
  const body = memEl("mem-layers").querySelector("tbody");
  body.replaceChildren();
  const entries = Object.entries(d.saved_for_backward_bytes || {});
  const total = entries.reduce((a, [, v]) => a + v, 0);
  for (const [path, v] of entries) {
    const tr = document.createElement("tr");
    const name = document.createElement("td");
    const link = document.createElement("button");
    link.type = "button";
    link.className = "linkish";
    link.textContent = path || "(model)";
    link.title = "find this layer in the tree";
    link.addEventListener("click", () => {
      const s = memEl("search");
      s.value = path;
      s.dispatchEvent(new Event("input", { bubbles: true }));
    });
    name.append(link);
    const bytes = document.createElement("td");
    bytes.className = "num";
    bytes.textContent = memBytes(v);
    const share = document.createElement("td");
    share.className = "bar";
    const fill = document.createElement("span");
    fill.className = "fill";
    fill.style.width = `${total ? (100 * v) / total : 0}%`;
    share.append(fill);
    tr.append(name, bytes, share);
    body.append(tr);
  }
  memEl("mem-layers-note").textContent = d.mode === "train"
    ? `${entries.length} layers keep ${memBytes(total)} for backward (a storage saved by two layers counts once, ` +
      "for the first)."
    : "Layers keep activations for backward only in training: switch the mode to train to list them.";
  memEl("mem-result").hidden = false;
}

async function memPredict() {
  const out = memEl("mem-status");
  out.textContent = "predicting on fake tensors…";
  out.classList.remove("error");
  try {
    const resp = await fetch(`/api/memory?${memParams()}`);
    const data = await resp.json();
    if (!resp.ok) throw new Error(data.error || `HTTP ${resp.status}`);
    memRender(data);
    out.textContent = "";
  } catch (err) {
    out.textContent = String(err.message || err);
    out.classList.add("error");
  }
}

document.addEventListener("DOMContentLoaded", () => {
  memEl("memory-form").addEventListener("submit", (e) => { e.preventDefault(); memPredict(); });
});
