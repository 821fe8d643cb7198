"""``lvm memory MODEL``: the peak memory of one inference or training step, predicted on fake tensors.

Options: ``--measure`` runs the same step for real in a fresh process and adds the measured peak and the error;
``--budget 24GiB`` (or ``--budget cuda:0``) adds the largest batch whose predicted peak fits. The search stops at
the largest ``--batch-size`` accepted (``parsing.MAX_BATCH_SIZE``); when that batch still fits, the answer is only a
lower bound: the text says so and the exit status is 1, as with ``--json`` (``budget_search.hit_upper_bound``).
"""

from __future__ import annotations

import argparse
import json
import re
from typing import Any

from lvmharness.core.argtypes import batch_size, img_size, int_at_least, timeout
from lvmharness.core.memory_categories import CATEGORIES
from lvmharness.core.parsing import parse_bytes
from lvmharness.core.units import fmt_bytes
from lvmharness.core.vocab import DTYPE_NAMES
from lvmharness.measure.step import MODES, OPTIMIZERS, StepConfig
from lvmharness.measure.step_summary import summarize


def _budget(text: str) -> str | int:
    """A byte size (``24GiB``, ``512MiB``, ``2e9`` is not accepted: write ``2GB``) or a CUDA device."""
    if re.fullmatch(r"cuda(:\d+)?", text.strip().lower()):
        return text.strip().lower()
    try:
        return parse_bytes(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"{exc}, or a CUDA device such as cuda:0") from None


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="alias or timm name")
    p.add_argument("--img-size", type=img_size, default=None, help="square input side (default: the model's)")
    p.add_argument("--batch-size", type=batch_size, default=1)
    p.add_argument("--mode", choices=MODES, default="train",
                   help="train: the step after the first (forward, CE loss, backward, optimizer step, zero_grad); "
                        "inference: eval() forward under no_grad (default: train)")
    p.add_argument("--dtype", choices=DTYPE_NAMES, default="fp32")
    p.add_argument("--optimizer", choices=OPTIMIZERS, default="adamw")
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--device", default="cpu", help="device the step is predicted for (cpu, cuda:N; default cpu)")
    p.add_argument("--measure", action="store_true",
                   help="also run the step for real in a fresh process and report the error")
    p.add_argument("--budget", type=_budget, default=None, metavar="BYTES|cuda:N",
                   help="largest batch whose predicted peak fits, e.g. 24GiB, or a device's free memory")
    p.add_argument("--layers", type=int_at_least(0, 10_000), default=0, metavar="N",
                   help="list the N modules keeping the most activation bytes for backward")
    p.add_argument("--timeout-s", type=timeout, default=900.0,
                   help="limit for the --measure child in seconds, > 0 (900)")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    cfg = StepConfig(args.model, batch_size=args.batch_size, img_size=args.img_size, mode=args.mode,
                     dtype=args.dtype, optimizer=args.optimizer, channels_last=args.channels_last, device=args.device)
    cfg, pred, out = summarize(cfg, per_layer=args.layers > 0, measure=args.measure, timeout_s=args.timeout_s,
                               budget=args.budget)
    bounded = bool(out.get("budget_search", {}).get("hit_upper_bound"))
    status = 0 if out.get("measure_status", "ok") == "ok" and not bounded else 1
    if args.json:
        print(json.dumps(out, indent=1))
        return status
    opt = f", {cfg.optimizer}" if cfg.mode == "train" else ""
    print(f"{cfg.model}: {cfg.mode} step, batch {cfg.batch_size}, {cfg.img_size} px, {cfg.dtype}{opt} on {cfg.device}"
          f"  (predicted on fake tensors in {pred.wall_s:.1f} s)")
    print(f"  aims at: {cfg.quantity()}")
    for cat in CATEGORIES:
        print(f"  {cat:<18}{fmt_bytes(pred.breakdown[cat]):>14}")
    print(f"  {'predicted peak':<18}{fmt_bytes(pred.peak_bytes):>14}  (reached during {pred.peak_phase})")
    if args.measure:
        _print_measured(out)
    if "budget_bytes" in out:
        _print_budget(out, bounded)
    if args.layers > 0:
        print(f"\n  {'module':<40} {'kept for backward':>18}")
        for path, nbytes in list(out["saved_for_backward_bytes"].items())[: args.layers]:
            print(f"  {path or '(model)':<40} {fmt_bytes(nbytes):>18}")
    return status


def _print_measured(out: dict[str, Any]) -> None:
    if out["measure_status"] != "ok":
        print(f"  measured peak: {out['measure_status']}: {out.get('measure_error')}")
        return
    print(f"  {'measured peak':<18}{fmt_bytes(out['measured_peak_bytes']):>14}  (MemTracker, real tensors, "
          f"fresh process)  error {out['rel_error']:+.2%}")
    if "cuda_max_memory_allocated_bytes" in out:
        print(f"  {'cuda allocated':<18}{fmt_bytes(out['cuda_max_memory_allocated_bytes']):>14}  "
              "(torch.cuda.max_memory_allocated over the step: adds allocator rounding and kernel workspaces)")


def _print_budget(out: dict[str, Any], bounded: bool) -> None:
    s = out["budget_search"]
    n = out["predicted_max_batch"]
    line = f"  largest batch for {fmt_bytes(out['budget_bytes'])}: {n}"
    if bounded:
        line = (f"  largest batch for {fmt_bytes(out['budget_bytes'])}: at least {n:,}: the search stops at "
                f"batch {n:,} (the largest --batch-size), which still fits; the true answer is larger")
    elif n > 0 and "predicted_peak_at_max_bytes" in s:
        line += (f"  (peak {fmt_bytes(s['predicted_peak_at_max_bytes'])}; batch {n + 1}: "
                 f"{fmt_bytes(s['predicted_peak_at_next_bytes'])})")
    print(line)
    fit = s["fit"]
    print(f"    fit: {fmt_bytes(fit['intercept_bytes'])} + {fmt_bytes(fit['bytes_per_sample'])} x batch, "
          f"{len(s['probes'])} fake runs")
