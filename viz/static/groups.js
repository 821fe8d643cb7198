// The graph's tree: walking it, folding repeated blocks into groups, and search hits.

export function walk(node, fn) { fn(node); for (const c of node.children) walk(c, fn); }

// Consecutive siblings with the same structure fold into one row.
const signature = (n) => [n.type, n.params, n.macs, n.children.length].join("|");

export function groupsOf(node) {
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

export function allGroups(node) {
  const out = [];
  walk(node, (n) => { for (const g of groupsOf(n)) if (g.group) out.push(g.key); });
  return out;
}

function groupKeyOf(parent, child) {
  for (const g of groupsOf(parent)) if (g.group && g.members.includes(child)) return g.members[0].path;
  return null;
}

function matches(node, q) {
  // A plain word matches a layer's own name or type; a dotted query ("blocks.3") matches paths.
  if (q.includes(".") || q.includes("#")) return node.path.toLowerCase().includes(q);
  return node.name.toLowerCase().includes(q) || node.type.toLowerCase().includes(q);
}

export function markHits(node, q, hits, open) {
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
