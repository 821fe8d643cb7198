// Sorting siblings by a column: the value of a row (a layer or a folded group) under each sort key.
import { measuredMs, state, timeOf } from "./state.js";

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

export function sortItems(items) {
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

// Names and types sort A to Z first; numbers largest first.
export function nextSort(key) {
  if (state.sort.key === key) return { key, dir: -state.sort.dir };
  return { key, dir: key === "layer" || key === "type" ? 1 : -1 };
}
