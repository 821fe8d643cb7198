"""``lvm layers MODEL``: measured time per module beside its MACs, achieved FLOP/s and roofline place.

The tree prints with ms, share of time, share of MACs and achieved GFLOP/s per node, then the time by layer type
(attention, MLP, conv, norm, embedding, head) and how the direct children's sum compares with the measured p50.
``--json`` prints the ``lvmharness.layers`` document; ``-o DIR`` writes it where the architecture page finds it
(``DIR/layers/<graph name>-<device>-<mode>.json``, next to the model's graph file, which is written if missing).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from lvmharness.core.argtypes import int_at_least, output_folder
from lvmharness.core.outputs import check_output_folder
from lvmharness.core.vocab import DTYPE_NAMES
from lvmharness.formats.graph_format import LAYERS_DIR, MAX_GRAPH_DEPTH, save_for_page
from lvmharness.models.aliases import graph_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("--img-size", type=int_at_least(16, 4096), default=None)
    p.add_argument("--batch-size", type=int_at_least(1, 4096), default=1)
    p.add_argument("--device", default="cpu", help="cpu, cuda, cuda:N, mps or auto (default cpu)")
    p.add_argument("--dtype", default="fp32", choices=DTYPE_NAMES)
    p.add_argument("--mode", default="inference", choices=["inference", "train"],
                   help="inference: one forward; train: forward + backward of a training step (no optimizer step)")
    p.add_argument("--steps", type=int_at_least(1, 1000), default=5,
                   help="profiled steps; the step with the median total is reported (default 5)")
    p.add_argument("--warmup", type=int_at_least(0, 1000), default=2, help="untimed steps first (default 2)")
    p.add_argument("--depth", type=int_at_least(0, MAX_GRAPH_DEPTH), default=2,
                   help="tree depth printed (default 2: ViT blocks, ResNet stages)")
    p.add_argument("--no-roofline", action="store_true",
                   help="skip the compute and copy probes (no roofline; saves a few seconds)")
    p.add_argument("--json", action="store_true", help="print the whole document as JSON")
    p.add_argument("-o", "--output", type=output_folder, default=None, metavar="DIR",
                   help="graphs folder of the architecture page (e.g. results/graphs): writes the measurement there")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: they import torch, which the parser of the lvm command line never needs.
    from lvmharness.measure.graph import build_graph
    from lvmharness.measure.layers.run import measure_from_spec

    out_dir: Path | None = args.output
    if out_dir is not None:
        check_output_folder(out_dir / LAYERS_DIR, what="layer-times folder")  # checked before the measurement
    doc = measure_from_spec(
        args.model, img_size=args.img_size, batch_size=args.batch_size, device=args.device, dtype=args.dtype,
        mode=args.mode, steps=args.steps, warmup=args.warmup, roofline=not args.no_roofline,
    )
    if out_dir is not None:
        stem = graph_name(doc["alias"], doc["img_size"], doc["batch_size"], doc["dtype"])
        path = save_for_page(doc, out_dir, stem, lambda: build_graph(doc["alias"], img_size=doc["img_size"],
                                                                     batch_size=doc["batch_size"], dtype=doc["dtype"]))
        print(f"wrote {path}", file=sys.stderr)
    if args.json:
        print(json.dumps(doc, indent=1))
    else:
        print(render(doc, depth=args.depth))
    return 0


def gap_explained(doc: dict[str, Any]) -> str:
    """One sentence: how the direct children's time compares with the measured p50, and where the gap goes."""
    t, ref = doc["totals"], doc["reference"]
    p50 = ref["p50_ms"]
    ratio = t["children_vs_p50"]
    verdict = "within" if t["within_tolerance"] else "NOT within"
    python_ms = t["python_in_modules_ms"] + t["python_outside_modules_ms"]
    return (f"direct children {t['children_ms']:.2f} ms = {ratio:.1%} of the measured p50 {p50:.2f} ms "
            f"({verdict} {t['tolerance']:.0%}); gap {t['gap_ms']:+.2f} ms = ops of the model's own forward "
            f"{t['model_own_ops_ms']:.2f} ms + ops outside the model {t['outside_model_ms']:.2f} ms + unattributed "
            f"{t['unattributed_ms']:.2f} ms (Python between ops {python_ms:.2f} ms "
            f"while profiled, dispatch and profiler overhead)")


def type_shares(doc: dict[str, Any]) -> dict[str, float]:
    """Share of the attributed module time per layer type."""
    total = sum(doc["by_type"].values())
    return {k: v / total if total else 0.0 for k, v in doc["by_type"].items()}


def _fmt_rate(v: float | None) -> str:
    return "" if not v else f"{v / 1e9:.1f}"


def render(doc: dict[str, Any], *, depth: int = 2) -> str:
    """The tree as text: one row per module down to ``depth``, then layer types, the gap and the peaks."""
    t = doc["totals"]
    lines = [
        f"{doc['model']} on {doc['device']} {doc['dtype']}, batch {doc['batch_size']}, {doc['img_size']}px, "
        f"{doc['mode']}: {doc['clock']}, step {t['step_used'] + 1} of {t['steps_profiled']} profiled "
        f"(median total); MACs = multiply-accumulates",
        f"{'module':<44} {'type':<20} {'ms':>9} {'time':>6} {'MACs':>6} {'GFLOP/s':>9} {'bound':>7}",
    ]
    for n in doc["nodes"]:
        if n["depth"] > depth:
            continue
        roof = n.get("roofline") or {}
        label = ("  " * n["depth"] + (n["path"] or n["name"]))[:44]
        lines.append(f"{label:<44} {n['type'][:20]:<20} {n['ms']:>9.3f} {n['share_time']:>6.1%} "
                     f"{n['share_macs']:>6.1%} {_fmt_rate(n['achieved_flops_per_s']):>9} {roof.get('bound') or '':>7}")
    shares = type_shares(doc)
    lines.append("")
    lines.append("time by layer type: " + ", ".join(
        f"{k} {doc['by_type'][k]:.2f} ms ({shares[k]:.1%})" for k in doc["by_type"] if doc["by_type"][k] > 0))
    lines.append(gap_explained(doc))
    ref = doc["reference"]
    for what, busy in (("timing the p50", ref), ("the profiled steps", ref.get("profiled_steps") or {})):
        if busy.get("contended"):
            lines.append(f"WARNING: other processes took the machine during {what} (our CPU share "
                         f"{busy['cpu_share']:.0%}, {busy['other_load_cores']:.1f} cores busy elsewhere): these "
                         "times are not this model's")
    peaks = doc.get("peaks")
    if peaks and peaks.get("flops_per_s") and peaks.get("bytes_per_s"):
        source = f" ({peaks['compute_source']})" if peaks.get("compute_source") else ""
        lines.append(f"roofs: compute {peaks['flops_per_s'] / 1e9:.1f} GFLOP/s{source}, copy "
                     f"{peaks['bytes_per_s'] / 1e9:.1f} GB/s, ridge {peaks['flops_per_s'] / peaks['bytes_per_s']:.1f}"
                     " FLOP/byte")
        bound = [n for n in doc["nodes"] if n.get("roofline") and n["roofline"].get("bound") == "memory"]
        ms = sum(n["fwd_ms"] if n["leaf"] else n["own_fwd_ms"] for n in bound)
        lines.append(f"memory-bound leaves: {len(bound)}, {ms:.2f} ms of the forward")
    return "\n".join(lines)
