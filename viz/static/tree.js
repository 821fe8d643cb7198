// The architecture table: what is open, the search filter, the sort order, and drawing it.
import { byId } from "./dom.js";
import { allGroups, markHits, walk } from "./groups.js";
import { nodeRow } from "./rows.js";
import { nextSort } from "./sort.js";
import { state } from "./state.js";

// With a search, only the hits and the path to them stay (groups stay: they hold the hits).
function keptRows(rows, hits) {
  const keep = new Set();
  for (const p of hits) {
    keep.add(p);
    let cur = p;
    while (cur.includes(".") || cur.includes("#")) { cur = cur.replace(/[.#][^.#]*$/, ""); keep.add(cur); }
    keep.add("");
  }
  return rows.filter((r) => r.classList.contains("group") || keep.has(r.dataset.path));
}

export function render() {
  const tbody = byId("tree").querySelector("tbody");
  const rows = [];
  const view = { hits: null, open: state.expanded, toggle };
  const q = state.query.trim().toLowerCase();
  if (q) {
    view.hits = new Set();
    view.open = new Set(state.expanded);
    markHits(state.doc.root, q, view.hits, view.open);
    byId("matches").textContent = `${view.hits.size} match${view.hits.size === 1 ? "" : "es"}`;
  } else {
    byId("matches").textContent = "";
  }
  nodeRow(rows, state.doc.root, 0, view);
  tbody.replaceChildren(...(q ? keptRows(rows, view.hits) : rows));
}

function toggle(key) {
  if (state.expanded.has(key)) state.expanded.delete(key);
  else state.expanded.add(key);
  render();
}

export function expandAll() {
  state.expanded = new Set();
  walk(state.doc.root, (n) => { if (n.children.length) state.expanded.add(n.path); });
  for (const n of allGroups(state.doc.root)) state.expanded.add(n);
  render();
}

export function collapseAll() {
  state.expanded = new Set();
  render();
}

export function expandToDepth(depth) {
  state.expanded = new Set();
  walk(state.doc.root, (n) => { if (n.depth < depth && n.children.length) state.expanded.add(n.path); });
  render();
}

export function setSort(key) {
  state.sort = nextSort(key);
  for (const th of document.querySelectorAll("#tree th[data-sort]")) {
    const on = th.dataset.sort === state.sort.key;
    th.setAttribute("aria-sort", on ? (state.sort.dir > 0 ? "ascending" : "descending") : "none");
  }
  if (state.doc) render();
}

// Show the rows whose path holds ``path`` (a click on a roofline dot or a memory-panel layer).
export function search(path) {
  const box = byId("search");
  box.value = path;
  state.query = path;
  if (state.doc) render();
}
