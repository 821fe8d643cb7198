// Number formatting for the page: one home for every formatter (the tree, the summary, the memory panel).

export const fmtInt = (n) => (n === null || n === undefined ? "" : n.toLocaleString("en-US"));

export function fmtCount(n) {
  if (n === null || n === undefined) return "";
  if (n >= 1e9) return (n / 1e9).toFixed(2) + " G";
  if (n >= 1e6) return (n / 1e6).toFixed(2) + " M";
  if (n >= 1e3) return (n / 1e3).toFixed(1) + " k";
  return String(n);
}

// Multiply-accumulates as GMACs.
export const fmtG = (macs) => (macs / 1e9).toFixed(3);

// Bytes in binary units (GiB = 2^30 bytes), two decimals.
export function fmtBytes(b) {
  if (b === null || b === undefined) return "";
  const units = [["GiB", 2 ** 30], ["MiB", 2 ** 20], ["KiB", 2 ** 10]];
  for (const [u, d] of units) if (Math.abs(b) >= d) return `${(b / d).toFixed(2)} ${u}`;
  return `${b} B`;
}

export const fmtShapes = (shapes) => (shapes ? shapes.map((s) => s.join("×")).join(", ") : "");

// Milliseconds with three significant-ish digits.
export function fmtMs(ms) {
  if (ms === null || ms === undefined) return "";
  if (ms >= 100) return ms.toFixed(1);
  return ms >= 1 ? ms.toFixed(2) : ms.toFixed(3);
}

// FLOP/s as GFLOP/s.
export const fmtRate = (r) => (r ? (r / 1e9).toFixed(1) : "");

// An axis tick of FLOP/s (powers of ten) with a T, G or M prefix.
export function fmtRateAxis(v) {
  if (v >= 1e12) return v / 1e12 + " T";
  if (v >= 1e9) return v / 1e9 + " G";
  if (v >= 1e6) return v / 1e6 + " M";
  return String(v);
}
