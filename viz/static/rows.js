// The rows of the architecture table: one per layer or folded group of repeated blocks. Every value from the
// server is written with textContent, never as HTML. ``view`` carries the search hits, the open rows and what a
// toggle button does.
import { fmtBytes, fmtCount, fmtG, fmtInt, fmtMs, fmtRate, fmtShapes } from "./format.js";
import { groupsOf } from "./groups.js";
import { sortItems } from "./sort.js";
import { measuredMs, opTime, state, timeOf } from "./state.js";

const BAR_PX = 140; // width of a 100 % bar

function cell(tr, text, cls, title) {
  const td = document.createElement("td");
  if (cls) td.className = cls;
  td.textContent = text;
  if (title) td.title = title;
  tr.appendChild(td);
  return td;
}

function layerCell(tr, depth, label, key, view) {
  const td = document.createElement("td");
  td.className = "layer";
  td.style.paddingLeft = 8 + depth * 18 + "px";
  if (key !== null) {
    const open = view.open.has(key);
    const b = document.createElement("button");
    b.type = "button";
    b.className = "toggle";
    b.textContent = open ? "▾" : "▸";
    b.setAttribute("aria-label", (open ? "collapse " : "expand ") + label);
    b.setAttribute("aria-expanded", String(open));
    b.addEventListener("click", () => { view.toggle(key); });
    td.appendChild(b);
  } else {
    const s = document.createElement("span");
    s.className = "leaf";
    td.appendChild(s);
  }
  td.appendChild(document.createTextNode(label));
  tr.appendChild(td);
  return td;
}

function barCell(tr, macs, total) {
  const td = document.createElement("td");
  td.className = "bar";
  const share = total ? macs / total : 0;
  const wrap = document.createElement("div");
  wrap.className = "barwrap";
  const bar = document.createElement("div");
  bar.style.width = Math.max(share * BAR_PX, macs ? 1 : 0) + "px";
  const pct = document.createElement("span");
  pct.textContent = (share * 100).toFixed(1) + "%";
  wrap.append(bar, pct);
  td.appendChild(wrap);
  tr.appendChild(td);
}

function barDiv(cls, share, value) {
  const div = document.createElement("div");
  div.className = cls;
  div.style.width = Math.max(share * BAR_PX, value ? 1 : 0) + "px";
  return div;
}

// Orange: share of the measured time; blue: share of the MACs.
function timeBarCell(tr, ms, macs, measured) {
  const td = document.createElement("td");
  td.className = "bar timebar";
  td.hidden = !measured;
  if (measured && ms !== null && ms !== undefined) {
    const tShare = state.totalMs ? ms / state.totalMs : 0;
    const mShare = state.doc.totals.macs ? macs / state.doc.totals.macs : 0;
    const wrap = document.createElement("div");
    wrap.className = "pair";
    wrap.append(barDiv("t", tShare, ms), barDiv("m", mShare, macs));
    const pct = document.createElement("span");
    pct.textContent = (tShare * 100).toFixed(1) + "%";
    td.append(wrap, pct);
    td.title = `time ${(tShare * 100).toFixed(1)}% vs MACs ${(mShare * 100).toFixed(1)}% of the model`;
  }
  tr.appendChild(td);
}

function timeCells(tr, ms, macs, rate, title) {
  const measured = !!state.times;
  const tdMs = cell(tr, measured ? fmtMs(ms) : "", "num time", title || "");
  tdMs.hidden = !measured;
  timeBarCell(tr, ms, macs, measured);
  const tdRate = cell(tr, measured ? fmtRate(rate) : "", "num rate");
  tdRate.hidden = !measured;
}

function nodeTimeCells(tr, node) {
  const t = timeOf(node);
  const o = t ? null : opTime(node);
  if (t) {
    const bwd = t.bwd_ms !== null && t.bwd_ms !== undefined ? `, backward ${fmtMs(t.bwd_ms)} ms` : "";
    timeCells(tr, t.ms, node.macs, t.achieved_flops_per_s,
      `forward ${fmtMs(t.fwd_ms)} ms${bwd}; own ops ${fmtMs(t.own_ms)} ms`);
  } else if (o) {
    timeCells(tr, o.ms, node.macs, o.ms ? (2 * node.macs) / (o.ms / 1e3) : null,
      "time of the ops the parent module runs itself");
  } else {
    timeCells(tr, null, node.macs, null);
  }
}

export function nodeRow(rows, node, depth, view) {
  const tr = document.createElement("tr");
  tr.dataset.path = node.path;
  if (node.kind === "op") tr.className = "op";
  if (view.hits && view.hits.has(node.path)) tr.classList.add("match");
  const layer = layerCell(tr, depth, node.name, node.children.length > 0 ? node.path : null, view);
  layer.title = node.path || node.name;
  cell(tr, node.type, "type");
  cell(tr, fmtShapes(node.output_shapes), "shape");
  cell(tr, fmtCount(node.params_own), "num", fmtInt(node.params_own));
  cell(tr, fmtCount(node.params), "num params", fmtInt(node.params));
  cell(tr, fmtG(node.macs), "num", fmtInt(node.macs) + " MACs");
  barCell(tr, node.macs, state.doc.totals.macs);
  cell(tr, fmtBytes(node.activation_bytes), "num");
  nodeTimeCells(tr, node);
  rows.push(tr);
  if (view.open.has(node.path)) renderChildren(rows, node, depth + 1, view);
}

function groupRow(rows, g, depth, view, parent) {
  const first = g.members[0];
  const last = g.members[g.members.length - 1];
  const tr = document.createElement("tr");
  tr.className = "group";
  tr.dataset.path = g.key;
  const prefix = parent.path ? parent.name + "." : "";
  layerCell(tr, depth, `${prefix}${first.name}–${last.name} ×${g.members.length}`, g.key, view);
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
  if (view.open.has(g.key)) for (const m of g.members) nodeRow(rows, m, depth + 1, view);
}

function renderChildren(rows, node, depth, view) {
  for (const item of sortItems(groupsOf(node))) {
    if (item.group) groupRow(rows, item, depth, view, node);
    else nodeRow(rows, item, depth, view);
  }
}
