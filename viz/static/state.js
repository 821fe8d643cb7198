// What the page shows now, shared by its modules, and the measured time of a node of the shown graph.

export const state = {
  doc: null, name: null, expanded: new Set(), query: "",
  times: null, // Map path -> measured node of the chosen measurement, or null when none exists
  measured: null, // the chosen lvmharness.layers document
  totalMs: 0, // the model's measured time: the 100 % of the time bars
  opCount: new Map(), // module path -> how many op leaves it runs itself
  sort: { key: null, dir: 1 },
  canMeasure: false,
};

export const timeOf = (node) => (state.times && state.times.has(node.path) ? state.times.get(node.path) : null);

export function opTime(node) {
  // An op leaf is a multiply-add op its parent module runs itself (timm's attention calling SDPA). When the parent
  // has exactly one such op, the parent's own measured time is that op's (plus the reshapes around it).
  if (node.kind !== "op" || !state.times) return null;
  const parentPath = node.path.split("#")[0];
  const parent = state.times.get(parentPath);
  if (!parent) return null;
  const siblings = state.opCount.get(parentPath) || 0;
  return siblings === 1 ? { ms: parent.own_ms } : null;
}

export function measuredMs(node) {
  const t = timeOf(node);
  if (t) return t.ms;
  const o = opTime(node);
  return o ? o.ms : null;
}
