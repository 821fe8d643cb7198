// The roofline chart of a measurement (SVG; no external script): each leaf layer's FLOPs per byte moved against
// its achieved FLOP/s, under the machine's roofs (copy bandwidth up to the ridge, then peak compute).
import { byId } from "./dom.js";
import { fmtRateAxis } from "./format.js";
import { search } from "./tree.js";

const SVG = "http://www.w3.org/2000/svg";
const W = 640, H = 360, L = 70, R = 20, T = 16, B = 44; // chart size and margins, in SVG units

function svgEl(tag, attrs, text) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function note(m, peaks) {
  const noMacs = m.nodes.filter((n) => n.roofline && !n.roofline.flops && n.roofline.bytes).length;
  const ridge = peaks.flops_per_s / peaks.bytes_per_s;
  const source = peaks.compute_source ? " (" + peaks.compute_source + ")" : "";
  return "Each dot is a leaf layer (or the ops a module runs itself): FLOPs per byte moved against achieved FLOP/s. " +
    `Roofs: compute ${(peaks.flops_per_s / 1e9).toFixed(1)} GFLOP/s${source}, copy ${(peaks.bytes_per_s / 1e9).toFixed(1)} GB/s, ridge ${ridge.toFixed(1)} FLOP/byte. ` +
    `${noMacs} layers without multiply-adds (norms, activations, pooling) are memory-bound by definition and not drawn.`;
}

// Log-log axes spanning the points and the roofs: decades x0..x1, y0..y1 and the maps to SVG units.
function axes(pts, peaks) {
  const ridge = peaks.flops_per_s / peaks.bytes_per_s;
  const xs = pts.map((n) => n.roofline.intensity_flop_per_byte).concat([ridge]);
  const ys = pts.map((n) => n.roofline.achieved_flops_per_s).concat([peaks.flops_per_s]);
  const x0 = Math.floor(Math.log10(Math.min(...xs) / 2)), x1 = Math.ceil(Math.log10(Math.max(...xs) * 2));
  const y0 = Math.floor(Math.log10(Math.min(...ys) / 2)), y1 = Math.ceil(Math.log10(Math.max(...ys) * 1.5));
  const X = (v) => L + ((Math.log10(v) - x0) / (x1 - x0)) * (W - L - R);
  const Y = (v) => H - B - ((Math.log10(v) - y0) / (y1 - y0)) * (H - T - B);
  return { x0, x1, y0, y1, X, Y, ridge };
}

function drawGrid(svg, a) {
  const { x0, x1, y0, y1, X, Y } = a;
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
}

// Roofs: bandwidth slope up to the ridge, then the compute ceiling.
function drawRoof(svg, a, peaks) {
  const { x0, x1, y0, X, Y, ridge } = a;
  const xa = 10 ** x0, xb = 10 ** x1;
  const roofY = (i) => Math.min(peaks.flops_per_s, i * peaks.bytes_per_s);
  const start = Math.max(xa, 10 ** y0 / peaks.bytes_per_s);
  svg.appendChild(svgEl("polyline", { points: `${X(start)},${Y(roofY(start))} ${X(ridge)},${Y(peaks.flops_per_s)} ${X(xb)},${Y(peaks.flops_per_s)}`, class: "roof" }));
}

function drawPoints(svg, a, pts) {
  for (const n of pts) {
    const r = n.roofline;
    const c = svgEl("circle", { cx: a.X(r.intensity_flop_per_byte), cy: a.Y(r.achieved_flops_per_s), r: 4, class: "pt " + (r.bound || ""), "data-path": n.path });
    c.appendChild(svgEl("title", {}, `${n.path || n.name} (${n.type}): ${r.intensity_flop_per_byte.toFixed(2)} FLOP/byte, ` +
      `${(r.achieved_flops_per_s / 1e9).toFixed(2)} GFLOP/s, ${r.bound}-bound, ${r.fraction_of_roof ? (r.fraction_of_roof * 100).toFixed(0) + "% of its roof" : ""}`));
    c.addEventListener("click", () => search(n.path));
    svg.appendChild(c);
  }
}

export function renderRoofline(m) {
  const svg = byId("roofline-svg");
  svg.replaceChildren();
  const peaks = m && m.peaks;
  const pts = m ? m.nodes.filter((n) => n.roofline && n.roofline.intensity_flop_per_byte > 0 && n.roofline.achieved_flops_per_s > 0) : [];
  byId("roofline").hidden = !m;
  if (!m) return;
  if (!pts.length || !peaks || !peaks.flops_per_s || !peaks.bytes_per_s) {
    byId("roofline-note").textContent = "No roofline: this measurement has no measured peaks (lvm layers without --no-roofline) or no leaf with multiply-adds.";
    return;
  }
  byId("roofline-note").textContent = note(m, peaks);
  const a = axes(pts, peaks);
  svg.setAttribute("viewBox", `0 0 ${W} ${H}`);
  drawGrid(svg, a);
  drawRoof(svg, a, peaks);
  drawPoints(svg, a, pts);
}
