// Showing a graph: its title and totals, the export links, the measurements to choose from, the tree.
import { byId } from "./dom.js";
import { fmtBytes, fmtCount, fmtG, fmtInt, fmtMs } from "./format.js";
import { walk } from "./groups.js";
import { renderRoofline } from "./roofline.js";
import { state } from "./state.js";
import { render } from "./tree.js";

function totals(t) {
  return [
    ["Params", fmtCount(t.params), fmtInt(t.params)],
    ["GMACs", fmtG(t.macs), fmtInt(t.macs) + " multiply-accumulates"],
    ["GFLOPs", (t.flops / 1e9).toFixed(3), "2 × MACs"],
    ["Fwd+bwd GMACs", t.macs_fwd_bwd ? fmtG(t.macs_fwd_bwd) : "—", "one training step"],
    ["Weights", fmtBytes(t.weight_bytes), ""],
    ["Activations", fmtBytes(t.activation_bytes), "sum over leaf layers"],
    ["Weights + activations", fmtBytes(t.weight_bytes + t.activation_bytes), ""],
    ["Modules", fmtInt(t.modules), ""],
  ];
}

function renderTotals(t) {
  const dl = byId("totals");
  dl.replaceChildren();
  for (const [k, v, title] of totals(t)) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    if (title) dd.title = title;
    div.append(dt, dd);
    dl.appendChild(div);
  }
}

function listMeasurements(doc) {
  const sel = byId("measured");
  sel.replaceChildren();
  for (const [i, m] of (doc.layer_times || []).entries()) {
    sel.appendChild(new Option(`${m.device} ${m.mode} (${m.created_utc ? m.created_utc.slice(0, 16) : m.file})`, String(i)));
  }
  byId("measured-label").hidden = !(doc.layer_times || []).length;
}

export function show(doc, name) {
  state.doc = doc;
  state.name = name;
  state.query = byId("search").value;
  byId("title").textContent = `${doc.alias || doc.model} — ${doc.model} at ${doc.img_size}×${doc.img_size}, batch ${doc.batch_size}, ${doc.dtype}`;
  renderTotals(doc.totals);
  byId("csv").href = `/api/graph/${encodeURIComponent(name)}/csv`;
  byId("json").href = `/api/graph/${encodeURIComponent(name)}?download=1`;
  for (const id of ["summary", "toolbar", "tree"]) byId(id).hidden = false;
  state.expanded = new Set([""]);
  state.opCount = new Map();
  walk(doc.root, (n) => {
    if (n.kind === "op") { const p = n.path.split("#")[0]; state.opCount.set(p, (state.opCount.get(p) || 0) + 1); }
  });
  listMeasurements(doc);
  useMeasurement(0);
}

// One line: where and how it was measured, the step's p50, and the time by layer type.
function measuredLine(m) {
  const t = m.totals || {};
  const ref = m.reference || {};
  const parts = [`Measured on ${m.device} (${m.mode}, ${m.clock || "op self time"}):`,
    `step p50 ${fmtMs(ref.p50_ms)} ms,`,
    `direct children ${fmtMs(t.children_ms)} ms (${t.children_vs_p50 ? (t.children_vs_p50 * 100).toFixed(1) + "%" : "?"} of it).`];
  const types = m.by_type || {};
  const tot = Object.values(types).reduce((a, v) => a + v, 0);
  const shares = Object.entries(types).filter(([, v]) => v > 0).sort((a, b) => b[1] - a[1])
    .map(([k, v]) => `${k} ${((v / tot) * 100).toFixed(1)}%`);
  if (shares.length) parts.push("Time by layer type: " + shares.join(", ") + ".");
  return parts.join(" ");
}

export function useMeasurement(index) {
  const list = state.doc.layer_times || [];
  const m = list[index] || null;
  state.measured = m;
  state.times = m ? new Map(m.nodes.map((n) => [n.path, n])) : null;
  state.totalMs = m && m.nodes[0].share_time ? m.nodes[0].ms / m.nodes[0].share_time : m ? m.nodes[0].ms : 0;
  for (const el of document.querySelectorAll("#tree th.time-col")) el.hidden = !m;
  if (m) byId("measured-line").textContent = measuredLine(m);
  else {
    byId("measured-line").textContent = state.canMeasure
      ? "No measured times for this model, size and batch yet: press Measure to time it on this machine's CPU."
      : "No measured times for this model yet (lvm layers MODEL -o <graphs folder> writes them).";
  }
  renderRoofline(m);
  render();
}
