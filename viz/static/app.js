// lvmharness architecture page. Every value from the server is written with textContent, never as HTML.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { doc: null, name: null, expanded: new Set(), query: "" };

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
  rows.push(tr);
  if (isOpen) for (const m of g.members) nodeRow(rows, m, depth + 1, hits, open);
}

function renderChildren(rows, node, depth, hits, open) {
  for (const item of groupsOf(node)) {
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
  render();
}

async function load() {
  const params = new URLSearchParams();
  params.set("model", $("model").value.trim());
  if ($("img").value) params.set("img_size", $("img").value);
  params.set("batch_size", $("batch").value || "1");
  params.set("dtype", $("dtype").value);
  status("Loading " + params.get("model") + " …");
  const t0 = performance.now();
  try {
    const doc = await fetchJson("/api/graph?" + params.toString());
    history.replaceState(null, "", "?" + params.toString());
    show(doc, doc.name);
    const secs = ((performance.now() - t0) / 1000).toFixed(1);
    status(`${doc.generated ? "Generated and saved" : "Loaded saved graph"} ${doc.name} in ${secs} s`);
    if (doc.generated) refreshModels();
  } catch (err) {
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
  $("img").min = data.limits.img_size[0];
  $("img").max = data.limits.img_size[1];
  $("batch").max = data.limits.batch_size[1];
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
  refreshModels().catch((err) => status("Could not list models: " + err.message, true));
  if (q.get("model")) load();
});

function allGroups(node) {
  const out = [];
  walk(node, (n) => { for (const g of groupsOf(n)) if (g.group) out.push(g.key); });
  return out;
}
