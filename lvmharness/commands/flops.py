"""``lvm flops MODEL``: params, MACs and FLOPs (forward and forward+backward), per op and per module."""

from __future__ import annotations

import argparse
import json

from lvmharness.core.argtypes import batch_size, img_size, img_size_list, int_at_least
from lvmharness.formats.graph_format import MAX_GRAPH_DEPTH


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("--img-size", type=img_size, default=None, help="input side in px (default: the model's)")
    p.add_argument("--batch-size", type=batch_size, default=1)
    p.add_argument("--depth", type=int_at_least(0, MAX_GRAPH_DEPTH), default=2, help="module depth of the table")
    p.add_argument("--top", type=int_at_least(1, 100_000), default=15, help="rows of the table")
    p.add_argument("--verify", action="store_true",
                   help="count again with fvcore on CPU (real weights) and fail on > 0.1%% disagreement")
    p.add_argument("--scaling", metavar="SIZES", type=img_size_list,
                   help="comma list of input sides in px: fit MACs ~ pixels^k")
    p.add_argument("--convention", default="macs", metavar="NAMES",
                   help="what is counted, comma-separated: macs (default: multiply-adds, all params) or fvcore "
                        "(fvcore's default handles, timm's published tables), plus deploy (timm's "
                        "re-parameterised form) and/or eval_params (params of modules that run in eval)")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    # Imported here, not at the top: it imports torch and timm, which the parser of the lvm command line never needs.
    from lvmharness.measure.flops import analyze, macs_scaling, module_table

    sizes: list[int] = args.scaling or []
    report = analyze(args.model, img_size=args.img_size, batch_size=args.batch_size, verify=args.verify,
                     convention=args.convention)
    scaling = macs_scaling(args.model, sizes) if sizes else None
    if args.json:
        out = report.summary()
        out["macs_by_module"] = {p: sum(ops.values()) for p, ops in report.by_module.items() if p}
        if scaling:
            out["scaling"] = scaling
        print(json.dumps(out, indent=1))
        return 0
    b = report.batch_size
    if "fvcore" in report.convention:
        print(f"{report.model} at {report.img_size}px, batch {b}  (fvcore's default count on cpu: multiply-adds plus "
              "norm, pooling and upsampling elements, as timm's published tables; FLOPs = 2 x that)")
    else:
        print(f"{report.model} at {report.img_size}px, batch {b}  (counted on {report.device}; MACs = "
              "multiply-accumulates, FLOPs = 2 x MACs)")
    if report.convention != "macs":
        print(f"  convention          {report.convention}")
    print(f"  params              {report.params:>16,}  ({report.params / 1e6:.3f} M)")
    print(f"  forward MACs        {report.macs:>16,}  ({report.macs / b / 1e9:.3f} GMACs per image)")
    print(f"  forward FLOPs       {report.flops:>16,}  ({report.flops / b / 1e9:.3f} GFLOPs per image)")
    if report.macs_fwd_bwd is not None:
        print(f"  fwd+bwd MACs        {report.macs_fwd_bwd:>16,}  ({report.macs_fwd_bwd / report.macs:.2f} x forward)")
    if "difference_by_op" in report.convention_detail:
        print(f"  multiply-adds       {report.convention_detail['multiply_adds']:>16,}  (fvcore adds: "
              + ", ".join(f"{k} {v:,}" for k, v in report.convention_detail["difference_by_op"].items()) + ")")
    if report.verified_by:
        print(f"  second counter      {report.verified_by['macs']:>16,}  ({report.verified_by['counter']}, "
              f"{report.verified_by['rel_diff']:.4%} apart)")
    print("  by op:   " + ", ".join(f"{op} {v / 1e9:.3f} G" for op, v in report.by_op.items()))
    print(f"\n  {'module (depth <= ' + str(args.depth) + ')':<40} {'GMACs':>10} {'share':>7}")
    for path, module_macs, share in module_table(report, depth=args.depth, top=args.top):
        print(f"  {path:<40} {module_macs / 1e9:>10.4f} {share:>7.1%}")
    if scaling:
        print(f"\n  scaling over {sizes}: MACs ~ pixels^{scaling['exponent_vs_pixels']:.3f}")
    return 0
