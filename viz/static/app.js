// lvmharness architecture page. Every value from the server is written with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  doc: null, name: null, expanded: new Set(), query: "",
  times: null, // Map path -> measured node of the chosen measurement, or null when none exists
  measured: null, // the chosen lvmharness.layers document
  sort: { key: null, dir: 1 },
};

// ---- formatting ---------------------------------------------------------------------------------------------
const fmtInt = (n) => (n === null || n === undefined ? "" : n.toLocaleString("en-US"));
function fmtCount(n) {
  if (n === null || n === undefined) return "";
  if (n >= 1e9) return (n / 1e9).toFixed(2) + " G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " k";
  return String(n);
}
const fmtG = (macs) => (macs / 1e9).toFixed(3);
function fmtBytes(b) {
  if (b === null || b === undefined) return "";
  if (b >= 2 ** 30) return (b / 2 ** 30).toFixed(2) + " GiB";
  if (b >= 2 ** 20) return (b / 2 ** 20).toFixed(2) + " MiB";
  if (b >= 2 ** 10) return (b / 2 ** 10).toFixed(1) + " KiB";
  return b + " B";
}
const fmtShapes = (shapes) => (shapes ? shapes.map((s) => s.join("×")).join(", ") : "");

// ---- repeated blocks: consecutive siblings with the same structure fold into one row -------------------------
const signature = (n) => [n.type, n.params, n.macs, n.children.length].join("|");

function groupsOf(node) {
  const out = [];
  const kids = node.children;
  let i = 0;
  while (i < kids.length) {
    let j = i + 1;
    if (kids[i].kind === "module" && kids[i].children.length) {
      while (j < kids.length && signature(kids[j]) === signature(kids[i])) j++;
    }
    out.push(j - i >= 2 ? { group: true, members: kids.slice(i, j), key: "group:" + kids[i].path } : kids[i]);
    i = j;
  }
  return out;
}

// ---- search -------------------------------------------------------------------------------------------------
function matches(node, q) {
  // A plain word matches a layer's own name or type; a dotted query ("blocks.3") matches paths.
  if (q.includes(".") || q.includes("#")) return node.path.toLowerCase().includes(q);
  return node.name.toLowerCase().includes(q) || node.type.toLowerCase().includes(q);
}

function markHits(node, q, hits, open) {
  // Returns true if this node or a descendant matches; ancestors of hits are opened.
  let any = matches(node, q) && node.path !== "";
  if (any) hits.add(node.path);
  for (const child of node.children) {
    if (markHits(child, q, hits, open)) {
      any = true;
      open.add(node.path);
      open.add("group:" + (groupKeyOf(node, child) || ""));
    }
  }
  return any;
}

function groupKeyOf(parent, child) {
  for (const g of groupsOf(parent)) if (g.group && g.members.includes(child)) return g.members[0].path;
  return null;
}

// ---- measured time per layer ----------------------------------------------------------------------------------
const timeOf = (node) => (state.times && state.times.has(node.path) ? state.times.get(node.path) : null);
const fmtMs = (ms) => (ms === null || ms === undefined ? "" : ms >= 100 ? ms.toFixed(1) : ms >= 1 ? ms.toFixed(2) : ms.toFixed(3));
const fmtRate = (r) => (r ? (r / 1e9).toFixed(1) : "");

function opTime(node) {
  // An op leaf is a multiply-add op its parent module runs itself (timm's attention calling SDPA). When the parent
  // has exactly one such op, the parent's own measured time is that op's (plus the reshapes around it).
  if (node.kind !== "op" || !state.times) return null;
  const parentPath = node.path.split("#")[0];
  const parent = state.times.get(parentPath);
  if (!parent) return null;
  const siblings = state.opCount.get(parentPath) || 0;
  return siblings === 1 ? { ms: parent.own_ms } : null;
}

function measuredMs(node) {
  const t = timeOf(node);
  if (t) return t.ms;
  const o = opTime(node);
  return o ? o.ms : null;
}

const SORTS = {
  layer: (n) => n.name,
  type: (n) => n.type,
  params: (n) => n.params,
  macs: (n) => n.macs,
  activations: (n) => n.activation_bytes || 0,
  ms: (n) => measuredMs(n) || 0,
  rate: (n) => { const t = timeOf(n); return t && t.achieved_flops_per_s ? t.achieved_flops_per_s : 0; },
};

function itemValue(item, key) {
  if (!item.group) return SORTS[key](item);
  if (key === "layer" || key === "type") return SORTS[key](item.members[0]);
  if (key === "rate") {
    const ms = item.members.reduce((a, m) => a + (measuredMs(m) || 0), 0);
    const macs = item.members.reduce((a, m) => a + m.macs, 0);
    return ms ? (2 * macs) / (ms / 1e3) : 0;
  }
  return item.members.reduce((a, m) => a + SORTS[key](m), 0);
}

function sortItems(items) {
  const { key, dir } = state.sort;
  if (!key) return items;
  const out = items.slice();
  out.sort((a, b) => {
    const va = itemValue(a, key);
    const vb = itemValue(b, key);
    if (typeof va === "string") return dir * va.localeCompare(vb);
    return dir * (va - vb);
  });
  return out;
}

function setSort(key) {
  if (state.sort.key === key) state.sort.dir = -state.sort.dir;
  else state.sort = { key, dir: key === "layer" || key === "type" ? 1 : -1 };
  for (const th of document.querySelectorAll("#tree th[data-sort]")) {
    const on = th.dataset.sort === state.sort.key;
    th.setAttribute("aria-sort", on ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
  }
  if (state.doc) render();
}

// ---- rendering ----------------------------------------------------------------------------------------------
function cell(tr, text, cls, title) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  if (title) td.title = title;
  tr.appendChild(td);
  return td;
}

function layerCell(tr, depth, label, expandable, key, open) {
  const td = document.createElement("td");
  td.className = "layer";
  td.style.paddingLeft = 8 + depth * 18 + "px";
  if (expandable) {
    const b = document.createElement("button");
    b.type = "button";
    b.className = "toggle";
    b.textContent = open ? "▾" : "▸";
    b.setAttribute("aria-label", (open ? "collapse " : "expand ") + label);
    b.setAttribute("aria-expanded", String(open));
    b.addEventListener("click", () => { toggle(key); });
    td.appendChild(b);
  } else {
    const s = document.createElement("span");
    s.className = "leaf";
    td.appendChild(s);
  }
  td.appendChild(document.createTextNode(label));
  tr.appendChild(td);
}

function barCell(tr, macs, total) {
  const td = document.createElement("td");
  td.className = "bar";
  const share = total ? macs / total : 0;
  const wrap = document.createElement("div");
  wrap.className = "barwrap";
  const bar = document.createElement("div");
  bar.style.width = Math.max(share * 140, macs ? 1 : 0) + "px";
  const pct = document.createElement("span");
  pct.textContent = (share * 100).toFixed(1) + "%";
  wrap.append(bar, pct);
  td.appendChild(wrap);
  tr.appendChild(td);
}

function timeCells(tr, ms, macs, rate, title) {
  const measured = !!state.times;
  const total = measured ? state.totalMs : 0;
  const tdMs = cell(tr, measured ? fmtMs(ms) : "", "num time", title || "");
  tdMs.hidden = !measured;
  const td = document.createElement("td");
  td.className = "bar timebar";
  td.hidden = !measured;
  if (measured && ms !== null && ms !== undefined) {
    const tShare = total ? ms / total : 0;
    const mShare = state.doc.totals.macs ? macs / state.doc.totals.macs : 0;
    const wrap = document.createElement("div");
    wrap.className = "pair";
    const bt = document.createElement("div");
    bt.className = "t";
    bt.style.width = Math.max(tShare * 140, ms ? 1 : 0) + "px";
    const bm = document.createElement("div");
    bm.className = "m";
    bm.style.width = Math.max(mShare * 140, macs ? 1 : 0) + "px";
    const pct = document.createElement("span");
    pct.textContent = (tShare * 100).toFixed(1) + "%";
    wrap.append(bt, bm);
    td.append(wrap, pct);
    td.title = `time ${(tShare * 100).toFixed(1)}% vs MACs ${(mShare * 100).toFixed(1)}% of the model`;
  }
  tr.appendChild(td);
  const tdRate = cell(tr, measured ? fmtRate(rate) : "", "num rate");
  tdRate.hidden = !measured;
}

function nodeRow(rows, node, depth, hits, open) {
  const tr = document.createElement("tr");
  tr.dataset.path = node.path;
  if (node.kind === "op") tr.className = "op";
  if (hits && hits.has(node.path)) tr.classList.add("match");
  const isOpen = open.has(node.path);
  layerCell(tr, depth, node.name, node.children.length > 0, node.path, isOpen);
  tr.querySelector("td.layer").title = node.path || node.name;
  cell(tr, node.type, "type");
  cell(tr, fmtShapes(node.output_shapes), "shape");
  cell(tr, fmtCount(node.params_own), "num", fmtInt(node.params_own));
  cell(tr, fmtCount(node.params), "num params", fmtInt(node.params));
  cell(tr, fmtG(node.macs), "num", fmtInt(node.macs) + " MACs");
  barCell(tr, node.macs, state.doc.totals.macs);
  cell(tr, fmtBytes(node.activation_bytes), "num");
  const t = timeOf(node);
  const o = t ? null : opTime(node);
  if (t) {
    const bwd = t.bwd_ms !== null && t.bwd_ms !== undefined ? `, backward ${fmtMs(t.bwd_ms)} ms` : "";
    timeCells(tr, t.ms, node.macs, t.achieved_flops_per_s, `forward ${fmtMs(t.fwd_ms)} ms${bwd}; own ops ${fmtMs(t.own_ms)} ms`);
  } else if (o) {
    timeCells(tr, o.ms, node.macs, o.ms ? (2 * node.macs) / (o.ms / 1e3) : null, "time of the ops the parent module runs itself");
  } else {
    timeCells(tr, null, node.macs, null);
  }
  rows.push(tr);
  if (isOpen) renderChildren(rows, node, depth + 1, hits, open);
}

function groupRow(rows, g, depth, hits, open, parent) {
  const first = g.members[0];
  const last = g.members[g.members.length - 1];
  const tr = document.createElement("tr");
  tr.className = "group";
  tr.dataset.path = g.key;
  const isOpen = open.has(g.key);
  const prefix = parent.path ? parent.name + "." : "";
  const label = `${prefix}${first.name}–${last.name} ×${g.members.length}`;
  layerCell(tr, depth, label, true, g.key, isOpen);
  const sum = (f) => g.members.reduce((a, m) => a + (m[f] || 0), 0);
  cell(tr, first.type, "type");
  cell(tr, fmtShapes(first.output_shapes), "shape");
  cell(tr, fmtCount(first.params) + " each", "num", fmtInt(first.params) + " per block");
  cell(tr, fmtCount(sum("params")), "num params", fmtInt(sum("params")));
  cell(tr, fmtG(sum("macs")), "num", fmtInt(sum("macs")) + " MACs");
  barCell(tr, sum("macs"), state.doc.totals.macs);
  cell(tr, fmtBytes(sum("activation_bytes")), "num");
  const ms = g.members.reduce((a, m) => a + (measuredMs(m) || 0), 0);
  timeCells(tr, state.times ? ms : null, sum("macs"), ms ? (2 * sum("macs")) / (ms / 1e3) : null,
    `${g.members.length} blocks, ${fmtMs(ms / g.members.length)} ms each on average`);
  rows.push(tr);
  if (isOpen) for (const m of g.members) nodeRow(rows, m, depth + 1, hits, open);
}

function renderChildren(rows, node, depth, hits, open) {
  for (const item of sortItems(groupsOf(node))) {
    if (item.group) groupRow(rows, item, depth, hits, open, node);
    else nodeRow(rows, item, depth, hits, open);
  }
}

function render() {
  const tbody = $("tree").querySelector("tbody");
  const rows = [];
  let hits = null;
  let open = state.expanded;
  const q = state.query.trim().toLowerCase();
  if (q) {
    hits = new Set();
    open = new Set(state.expanded);
    markHits(state.doc.root, q, hits, open);
    $("matches").textContent = `${hits.size} match${hits.size === 1 ? "" : "es"}`;
  } else {
    $("matches").textContent = "";
  }
  nodeRow(rows, state.doc.root, 0, hits, open);
  if (q) {
    // With a search, show hits and the path to them only.
    const keep = new Set();
    for (const p of hits) {
      keep.add(p);
      let cur = p;
      while (cur.includes(".") || cur.includes("#")) { cur = cur.replace(/[.#][^.#]*$/, ""); keep.add(cur); }
      keep.add("");
    }
    tbody.replaceChildren(...rows.filter((r) => r.classList.contains("group") || keep.has(r.dataset.path)));
  } else {
    tbody.replaceChildren(...rows);
  }
}

function toggle(key) {
  if (state.expanded.has(key)) state.expanded.delete(key);
  else state.expanded.add(key);
  render();
}

function walk(node, fn) { fn(node); for (const c of node.children) walk(c, fn); }

function expandToDepth(depth) {
  state.expanded = new Set();
  walk(state.doc.root, (n) => { if (n.depth < depth && n.children.length) state.expanded.add(n.path); });
  render();
}

// ---- loading ------------------------------------------------------------------------------------------------
function status(text, isError, suggestions) {
  const el = $("status");
  el.className = isError ? "error" : "";
  el.replaceChildren(document.createTextNode(text));
  for (const s of suggestions || []) {
    const b = document.createElement("button");
    b.type = "button";
    b.textContent = s;
    b.addEventListener("click", () => { $("model").value = s; load(); });
    el.appendChild(b);
  }
}

async function fetchJson(url) {
  const resp = await fetch(url);
  let body = null;
  try { body = await resp.json(); } catch (e) { body = { error: `HTTP ${resp.status}` }; }
  if (!resp.ok) {
    const err = new Error(body.error || `HTTP ${resp.status}`);
    err.body = body;
    throw err;
  }
  return body;
}

function show(doc, name) {
  state.doc = doc;
  state.name = name;
  state.query = $("search").value;
  const t = doc.totals;
  $("title").textContent = `${doc.alias || doc.model} — ${doc.model} at ${doc.img_size}×${doc.img_size}, batch ${doc.batch_size}, ${doc.dtype}`;
  const items = [
    ["Params", fmtCount(t.params), fmtInt(t.params)],
    ["GMACs", fmtG(t.macs), fmtInt(t.macs) + " multiply-accumulates"],
    ["GFLOPs", (t.flops / 1e9).toFixed(3), "2 × MACs"],
    ["Fwd+bwd GMACs", t.macs_fwd_bwd ? fmtG(t.macs_fwd_bwd) : "—", "one training step"],
    ["Weights", fmtBytes(t.weight_bytes), ""],
    ["Activations", fmtBytes(t.activation_bytes), "sum over leaf layers"],
    ["Weights + activations", fmtBytes(t.weight_bytes + t.activation_bytes), ""],
    ["Modules", fmtInt(t.modules), ""],
  ];
  const dl = $("totals");
  dl.replaceChildren();
  for (const [k, v, title] of items) {
    const div = document.createElement("div");
    const dt = document.createElement("dt");
    dt.textContent = k;
    const dd = document.createElement("dd");
    dd.textContent = v;
    if (title) dd.title = title;
    div.append(dt, dd);
    dl.appendChild(div);
  }
  $("csv").href = `/api/graph/${encodeURIComponent(name)}/csv`;
  $("json").href = `/api/graph/${encodeURIComponent(name)}?download=1`;
  for (const id of ["summary", "toolbar", "tree"]) $(id).hidden = false;
  state.expanded = new Set([""]);
  state.opCount = new Map();
  walk(doc.root, (n) => {
    if (n.kind === "op") { const p = n.path.split("#")[0]; state.opCount.set(p, (state.opCount.get(p) || 0) + 1); }
  });
  const sel = $("measured");
  sel.replaceChildren();
  for (const [i, m] of (doc.layer_times || []).entries()) {
    sel.appendChild(new Option(`${m.device} ${m.mode} (${m.created_utc ? m.created_utc.slice(0, 16) : m.file})`, String(i)));
  }
  $("measured-label").hidden = !(doc.layer_times || []).length;
  useMeasurement(0);
}

function useMeasurement(index) {
  const list = state.doc.layer_times || [];
  const m = list[index] || null;
  state.measured = m;
  state.times = m ? new Map(m.nodes.map((n) => [n.path, n])) : null;
  state.totalMs = m && m.nodes[0].share_time ? m.nodes[0].ms / m.nodes[0].share_time : m ? m.nodes[0].ms : 0;
  for (const el of document.querySelectorAll("#tree th.time-col")) el.hidden = !m;
  const line = $("measured-line");
  if (m) {
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
    line.textContent = parts.join(" ");
  } else {
    line.textContent = state.canMeasure
      ? "No measured times for this model, size and batch yet: press Measure to time it on this machine's CPU."
      : "No measured times for this model yet (lvm layers MODEL -o <graphs folder> writes them).";
  }
  renderRoofline(m);
  render();
}

// ---- roofline chart (SVG; no external script) ------------------------------------------------------------------
const SVG = "http://www.w3.org/2000/svg";
function svgEl(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function renderRoofline(m) {
  const box = $("roofline");
  const svg = $("roofline-svg");
  svg.replaceChildren();
  const peaks = m && m.peaks;
  const pts = m ? m.nodes.filter((n) => n.roofline && n.roofline.intensity_flop_per_byte > 0 && n.roofline.achieved_flops_per_s > 0) : [];
  box.hidden = !m;
  if (!m) return;
  const note = $("roofline-note");
  if (!pts.length || !peaks || !peaks.flops_per_s || !peaks.bytes_per_s) {
    note.textContent = "No roofline: this measurement has no measured peaks (lvm layers without --no-roofline) or no leaf with multiply-adds.";
    return;
  }
  const noMacs = m.nodes.filter((n) => n.roofline && !n.roofline.flops && n.roofline.bytes).length;
  const ridge = peaks.flops_per_s / peaks.bytes_per_s;
  note.textContent = `Each dot is a leaf layer (or the ops a module runs itself): FLOPs per byte moved against achieved FLOP/s. ` +
    `Roofs: compute ${(peaks.flops_per_s / 1e9).toFixed(1)} GFLOP/s${peaks.compute_source ? " (" + peaks.compute_source + ")" : ""}, copy ${(peaks.bytes_per_s / 1e9).toFixed(1)} GB/s, ridge ${ridge.toFixed(1)} FLOP/byte. ` +
    `${noMacs} layers without multiply-adds (norms, activations, pooling) are memory-bound by definition and not drawn.`;
  const W = 640, H = 360, L = 70, R = 20, T = 16, B = 44;
  const xs = pts.map((n) => n.roofline.intensity_flop_per_byte).concat([ridge]);
  const ys = pts.map((n) => n.roofline.achieved_flops_per_s).concat([peaks.flops_per_s]);
  const x0 = Math.floor(Math.log10(Math.min(...xs) / 2)), x1 = Math.ceil(Math.log10(Math.max(...xs) * 2));
  const y0 = Math.floor(Math.log10(Math.min(...ys) / 2)), y1 = Math.ceil(Math.log10(Math.max(...ys) * 1.5));
  const X = (v) => L + ((Math.log10(v) - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => H - B - ((Math.log10(v) - y0) / (y1 - y0)) * (H - T - B);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  for (let e = x0; e <= x1; e++) {
    svg.appendChild(svgEl("line", { x1: X(10 ** e), x2: X(10 ** e), y1: T, y2: H - B, class: "grid" }));
    svg.appendChild(svgEl("text", { x: X(10 ** e), y: H - B + 16, "text-anchor": "middle", class: "tick" }, `${10 ** e >= 1 ? 10 ** e : (10 ** e).toPrecision(1)}`));
  }
  for (let e = y0; e <= y1; e++) {
    svg.appendChild(svgEl("line", { x1: L, x2: W - R, y1: Y(10 ** e), y2: Y(10 ** e), class: "grid" }));
    svg.appendChild(svgEl("text", { x: L - 6, y: Y(10 ** e) + 4, "text-anchor": "end", class: "tick" }, fmtRateAxis(10 ** e)));
  }
  svg.appendChild(svgEl("text", { x: (L + W - R) / 2, y: H - 6, "text-anchor": "middle", class: "axis" }, "arithmetic intensity (FLOPs per byte moved)"));
  svg.appendChild(svgEl("text", { x: 14, y: (T + H - B) / 2, "text-anchor": "middle", class: "axis", transform: `rotate(-90 14 ${(T + H - B) / 2})` }, "achieved FLOP/s"));
  // Roofs: bandwidth slope up to the ridge, then the compute ceiling.
  const xa = 10 ** x0, xb = 10 ** x1;
  const roofY = (i) => Math.min(peaks.flops_per_s, i * peaks.bytes_per_s);
  const yMin = 10 ** y0;
  const start = Math.max(xa, yMin / peaks.bytes_per_s);
  svg.appendChild(svgEl("polyline", { points: `${X(start)},${Y(roofY(start))} ${X(ridge)},${Y(peaks.flops_per_s)} ${X(xb)},${Y(peaks.flops_per_s)}`, class: "roof" }));
  for (const n of pts) {
    const r = n.roofline;
    const c = svgEl("circle", { cx: X(r.intensity_flop_per_byte), cy: Y(r.achieved_flops_per_s), r: 4, class: "pt " + (r.bound || ""), "data-path": n.path });
    c.appendChild(svgEl("title", {}, `${n.path || n.name} (${n.type}): ${r.intensity_flop_per_byte.toFixed(2)} FLOP/byte, ` +
      `${(r.achieved_flops_per_s / 1e9).toFixed(2)} GFLOP/s, ${r.bound}-bound, ${r.fraction_of_roof ? (r.fraction_of_roof * 100).toFixed(0) + "% of its roof" : ""}`));
    c.addEventListener("click", () => { $("search").value = n.path; state.query = n.path; render(); });
    svg.appendChild(c);
  }
}

function fmtRateAxis(v) {
  if (v >= 1e12) return v / 1e12 + " T";
  if (v >= 1e9) return v / 1e9 + " G";
  if (v >= 1e6) return v / 1e6 + " M";
  return String(v);
}

// While a request runs, say so and for how long; also say what else the server is generating or measuring.
let busyTimer = null;
function busy(text) {
  const t0 = performance.now();
  clearInterval(busyTimer);
  const tick = async () => {
    const secs = ((performance.now() - t0) / 1000).toFixed(0);
    let others = "";
    try {
      const s = await fetchJson("/api/status");
      if (s.running.length) others = " — running on the server: " + s.running.map((r) => `${r.kind} ${r.name} (${r.seconds.toFixed(0)} s)`).join(", ");
    } catch (e) { /* the status line is a courtesy */ }
    if (busyTimer !== null) status(`${text} ${secs} s${others}`);
  };
  status(text);
  $("status").classList.add("busy");
  busyTimer = setInterval(tick, 1000);
}
function idle() { clearInterval(busyTimer); busyTimer = null; $("status").classList.remove("busy"); }

function currentParams() {
  const params = new URLSearchParams();
  params.set("model", $("model").value.trim());
  if ($("img").value) params.set("img_size", $("img").value);
  params.set("batch_size", $("batch").value || "1");
  params.set("dtype", $("dtype").value);
  return params;
}

async function measure() {
  const params = currentParams();
  const body = { model: params.get("model"), batch_size: Number(params.get("batch_size")), dtype: params.get("dtype") };
  if (params.get("img_size")) body.img_size = Number(params.get("img_size"));
  busy("Measuring time per layer of " + body.model + " on the CPU …");
  $("measure").disabled = true;
  try {
    const resp = await fetch("/api/measure", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const doc = await resp.json();
    idle();
    if (!resp.ok) throw new Error(doc.error || `HTTP ${resp.status}`);
    show(doc, doc.name);
    status(`Measured ${doc.name} on the CPU`);
  } catch (err) {
    idle();
    status(err.message, true);
  } finally {
    $("measure").disabled = false;
  }
}

let loadSeq = 0; // only the latest request may change what is shown (the default model may still be loading)
async function load() {
  const params = currentParams();
  const seq = ++loadSeq;
  busy("Loading " + params.get("model") + " (a graph not saved yet is generated first) …");
  const t0 = performance.now();
  try {
    const doc = await fetchJson("/api/graph?" + params.toString());
    if (seq !== loadSeq) return;
    idle();
    history.replaceState(null, "", "?" + params.toString());
    show(doc, doc.name);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    status(`${doc.generated ? "Generated and saved" : "Loaded saved graph"} ${doc.name} in ${secs} s`);
    if (doc.generated) refreshModels();
  } catch (err) {
    if (seq !== loadSeq) return;
    idle();
    const extra = err.body && err.body.matches ? err.body.matches : [];
    const valid = err.body && err.body.valid ? " Valid sizes: " + err.body.valid.join(", ") : "";
    status(err.message + (valid && !err.message.includes("Valid sizes") ? valid : ""), true, extra);
  }
}

async function loadSaved(name) {
  try {
    const doc = await fetchJson("/api/graph/" + encodeURIComponent(name));
    $("model").value = doc.alias || doc.model;
    $("img").value = doc.img_size;
    $("batch").value = doc.batch_size;
    $("dtype").value = doc.dtype;
    show(doc, name);
    status("Loaded saved graph " + name);
  } catch (err) {
    status(err.message, true);
  }
}

async function refreshModels() {
  const data = await fetchJson("/api/models");
  const list = $("model-list");
  list.replaceChildren();
  for (const a of data.aliases) {
    const o = document.createElement("option");
    o.value = a.alias;
    o.label = `${a.timm_name} (${a.img_size}px)`;
    list.appendChild(o);
  }
  const saved = $("saved");
  saved.replaceChildren(new Option("—", ""));
  for (const g of data.graphs) saved.appendChild(new Option(g.name, g.name));
  for (const u of data.unreadable || []) {
    const o = new Option(`${u.name} (unreadable: ${u.error})`, "");
    o.disabled = true;
    saved.appendChild(o);
  }
  $("img").min = data.limits.img_size[0];
  $("img").max = data.limits.img_size[1];
  $("batch").max = data.limits.batch_size[1];
  state.canMeasure = !!data.measure;
  $("measure").hidden = !data.measure;
  return data;
}

document.addEventListener("DOMContentLoaded", () => {
  $("pick").addEventListener("submit", (e) => { e.preventDefault(); load(); });
  $("saved").addEventListener("change", (e) => { if (e.target.value) loadSaved(e.target.value); });
  $("expand-all").addEventListener("click", () => {
    state.expanded = new Set();
    walk(state.doc.root, (n) => { if (n.children.length) state.expanded.add(n.path); });
    for (const n of allGroups(state.doc.root)) state.expanded.add(n);
    render();
  });
  $("collapse-all").addEventListener("click", () => { state.expanded = new Set(); render(); });
  $("expand-depth").addEventListener("click", () => expandToDepth(parseInt($("depth").value || "1", 10)));
  $("search").addEventListener("input", (e) => { state.query = e.target.value; if (state.doc) render(); });
  const q = new URLSearchParams(location.search);
  if (q.get("model")) $("model").value = q.get("model");
  if (q.get("img_size")) $("img").value = q.get("img_size");
  if (q.get("batch_size")) $("batch").value = q.get("batch_size");
  if (q.get("dtype")) $("dtype").value = q.get("dtype");
  $("measure").addEventListener("click", measure);
  $("measured").addEventListener("change", (e) => useMeasurement(parseInt(e.target.value, 10)));
  for (const th of document.querySelectorAll("#tree th[data-sort]")) {
    th.addEventListener("click", () => setSort(th.dataset.sort));
  }
  refreshModels()
    .then((data) => {
      // Open with a model shown: the one in the address, else the default one, else the first saved graph.
      if (q.get("model") || data.generate) load();
      else if (data.graphs.length) loadSaved(data.graphs[0].name);
      else status("No saved graphs in this folder and generation is off (lvm graph MODEL -o FILE writes one).");
    })
    .catch((err) => status("Could not list models: " + err.message, true));
});

function allGroups(node) {
  const out = [];
  walk(node, (n) => { for (const g of groupsOf(n)) if (g.group) out.push(g.key); });
  return out;
}
