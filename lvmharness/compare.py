"""``lvm compare BASE NEW``: every metric with a direction and a rule, and a non-zero exit on a regression.

Rules (one entry per family of value keys, like a formula table):
  * exact: params, MACs, FLOPs, graph structure — any change is a regression (they are deterministic);
  * memory (``*_bytes``): more than ``mem_tolerance`` larger is a regression, smaller an improvement;
  * latency: decided from the raw samples — a bootstrap confidence interval of the ratio of medians
    (new ÷ base); a regression only when the whole interval lies above 1 + ``latency_threshold``;
  * accuracy (``top1``/``top5``): down by more than ``acc_tolerance`` points is a regression;
  * status: ok → oom/error is a regression (oom/error → ok an improvement).
A case present on one side only is reported, never a crash.
"""

from __future__ import annotations

import argparse
import random
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvmharness.results import load_records
from lvmharness.stats import median

EXACT_KEYS = ("params", "macs", "flops", "macs_fwd_bwd", "flops_fwd_bwd", "graph_modules", "graph_structure_id",
              "max_batch_size", "scaling_macs", "scaling_img_sizes")
ACCURACY_KEYS = ("top1", "top5", "best_top1")
LATENCY_SAMPLES = {"latency_ms_p50": "samples", "instance_latency_ms_p50": "samples"}


@dataclass(frozen=True)
class Rules:
    latency_threshold: float = 0.10  # a slowdown must exceed 10 % with confidence to count
    confidence: float = 0.95
    mem_tolerance: float = 0.05
    acc_tolerance: float = 0.5  # percentage points
    bootstrap: int = 2000
    seed: int = 0


@dataclass
class Finding:
    case_id: str
    key: str
    base: Any
    new: Any
    verdict: str  # regression | improvement | same | noise | missing | added
    detail: str = ""


@dataclass
class Comparison:
    findings: list[Finding] = field(default_factory=list)

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "regression"]

    def table(self, *, show_all: bool = False) -> str:
        rows = [f for f in self.findings if show_all or f.verdict not in ("same",)]
        if not rows:
            return "no differences"
        head = ("verdict", "case", "value", "base", "new", "detail")
        cells = [(f.verdict.upper() if f.verdict == "regression" else f.verdict, f.case_id, f.key, _fmt(f.base),
                  _fmt(f.new), f.detail) for f in rows]
        widths = [min(60, max(len(str(r[i])) for r in [head, *cells])) for i in range(len(head))]
        lines = ["  ".join(str(c)[:60].ljust(w) for c, w in zip(head, widths, strict=True))]
        lines += ["  ".join(str(c)[:60].ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def median_ratio_ci(base: Sequence[float], new: Sequence[float], rules: Rules) -> tuple[float, float, float]:
    """(ratio of medians new/base, CI low, CI high) by a seeded percentile bootstrap."""
    rng = random.Random(rules.seed)
    ratio = median(new) / median(base)
    ratios = []
    for _ in range(rules.bootstrap):
        b = [base[rng.randrange(len(base))] for _ in base]
        n = [new[rng.randrange(len(new))] for _ in new]
        ratios.append(median(n) / median(b))
    ratios.sort()
    alpha = (1 - rules.confidence) / 2
    lo = ratios[int(alpha * (len(ratios) - 1))]
    hi = ratios[int((1 - alpha) * (len(ratios) - 1))]
    return ratio, lo, hi


def _latency(case: str, key: str, b: dict[str, Any], n: dict[str, Any], rules: Rules) -> Finding:
    bs, ns = b["values"].get(LATENCY_SAMPLES[key]), n["values"].get(LATENCY_SAMPLES[key])
    bv, nv = b["values"][key], n["values"][key]
    if bs and ns and len(bs) >= 3 and len(ns) >= 3:
        ratio, lo, hi = median_ratio_ci(bs, ns, rules)
        ci = f"x{ratio:.3f}, {rules.confidence:.0%} CI [{lo:.3f}, {hi:.3f}], threshold {rules.latency_threshold:.0%}"
        if lo > 1 + rules.latency_threshold:
            return Finding(case, key, bv, nv, "regression", "slower: " + ci)
        if hi < 1 - rules.latency_threshold:
            return Finding(case, key, bv, nv, "improvement", "faster: " + ci)
        return Finding(case, key, bv, nv, "noise", "within noise/threshold: " + ci)
    ratio = nv / bv if bv else float("inf")
    detail = f"x{ratio:.3f} (no raw samples: compared p50 against the threshold)"
    if ratio > 1 + rules.latency_threshold:
        return Finding(case, key, bv, nv, "regression", detail)
    return Finding(case, key, bv, nv, "noise" if abs(ratio - 1) > 1e-12 else "same", detail)


def _exact(case: str, key: str, bv: Any, nv: Any) -> Finding:
    if bv == nv:
        return Finding(case, key, bv, nv, "same")
    return Finding(case, key, bv, nv, "regression", "deterministic value changed (update the baseline if intended)")


def _memory(case: str, key: str, bv: Any, nv: Any, rules: Rules) -> Finding:
    if not bv:
        return Finding(case, key, bv, nv, "same" if bv == nv else "noise")
    rel = (nv - bv) / bv
    if rel > rules.mem_tolerance:
        return Finding(case, key, bv, nv, "regression", f"+{rel:.1%} (tolerance {rules.mem_tolerance:.0%})")
    if rel < -rules.mem_tolerance:
        return Finding(case, key, bv, nv, "improvement", f"{rel:.1%}")
    return Finding(case, key, bv, nv, "same" if rel == 0 else "noise", f"{rel:+.1%}")


def _accuracy(case: str, key: str, bv: Any, nv: Any, rules: Rules) -> Finding:
    diff = nv - bv
    if diff < -rules.acc_tolerance:
        return Finding(case, key, bv, nv, "regression", f"{diff:+.2f} points")
    if diff > rules.acc_tolerance:
        return Finding(case, key, bv, nv, "improvement", f"{diff:+.2f} points")
    return Finding(case, key, bv, nv, "same" if diff == 0 else "noise", f"{diff:+.2f} points")


def _rule_for(key: str) -> str | None:
    if key in EXACT_KEYS:
        return "exact"
    if key in LATENCY_SAMPLES:
        return "latency"
    if key.endswith("_bytes") and key != "mem_limit_bytes":
        return "memory"
    if key in ACCURACY_KEYS:
        return "accuracy"
    return None


def compare_records(base: list[dict[str, Any]], new: list[dict[str, Any]], rules: Rules | None = None,
                    metrics: Sequence[str] | None = None) -> Comparison:
    rules = rules or Rules()

    def index(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for r in records:
            if metrics and r["metric"] not in metrics:
                continue
            out[r["case_id"]] = r  # a re-run case: the last record wins
        return out

    b_idx, n_idx = index(base), index(new)
    result = Comparison()
    for case in sorted(b_idx.keys() | n_idx.keys()):
        b, n = b_idx.get(case), n_idx.get(case)
        if n is None:
            result.findings.append(Finding(case, "(case)", "present", None, "missing", "not in NEW"))
            continue
        if b is None:
            result.findings.append(Finding(case, "(case)", None, "present", "added", "only in NEW"))
            continue
        bs, ns = b["status"], n["status"]
        if bs != ns:
            verdict = "regression" if bs == "ok" else ("improvement" if ns == "ok" else "noise")
            result.findings.append(Finding(case, "status", bs, ns, verdict, n.get("error") or ""))
            continue
        if bs != "ok":
            continue
        for key in sorted(b["values"].keys() & n["values"].keys()):
            rule = _rule_for(key)
            bv, nv = b["values"][key], n["values"][key]
            if rule is None or bv is None or nv is None:
                continue
            if rule == "exact":
                found = _exact(case, key, bv, nv)
            elif rule == "latency":
                found = _latency(case, key, b, n, rules)
            elif rule == "memory":
                found = _memory(case, key, bv, nv, rules)
            else:
                found = _accuracy(case, key, bv, nv, rules)
            result.findings.append(found)
    return result


def compare_paths(base: Path | str, new: Path | str, rules: Rules | None = None,
                  metrics: Sequence[str] | None = None) -> Comparison:
    return compare_records(load_records(base), load_records(new), rules, metrics)


DETERMINISTIC_METRICS = ("flops", "flops_scaling")


def baseline_records(
    records: list[dict[str, Any]], metrics: Sequence[str] = DETERMINISTIC_METRICS
) -> list[dict[str, Any]]:
    """The deterministic subset of a run, for committing as a CI baseline: values counted, not timed."""
    out = []
    for r in records:
        if r["metric"] not in metrics or r["status"] != "ok":
            continue
        keep = {k: v for k, v in r["values"].items() if _rule_for(k) == "exact"}
        rec = {k: v for k, v in r.items() if k != "created_utc"}
        out.append({**rec, "values": keep, "provenance": {"counter": r["provenance"].get("counter")},
                    "run_id": "baseline"})
    out.sort(key=lambda r: r["case_id"])
    return out


# --- lvm compare ---------------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base")
    p.add_argument("new")
    p.add_argument("--metric", action="append", help="only these metrics (repeatable), e.g. --metric flops")
    p.add_argument("--latency-threshold", type=float, default=0.10, help="relative slowdown that counts (0.10)")
    p.add_argument("--mem-tolerance", type=float, default=0.05, help="relative memory growth allowed (0.05)")
    p.add_argument("--acc-tolerance", type=float, default=0.5, help="top-1/top-5 drop allowed, in points (0.5)")
    p.add_argument("--all", action="store_true", help="also list values that did not change")


def run(args: argparse.Namespace) -> int:
    rules = Rules(latency_threshold=args.latency_threshold, mem_tolerance=args.mem_tolerance,
                  acc_tolerance=args.acc_tolerance)
    result = compare_paths(args.base, args.new, rules, args.metric or None)
    print(result.table(show_all=args.all))
    counts: dict[str, int] = {}
    for f in result.findings:
        counts[f.verdict] = counts.get(f.verdict, 0) + 1
    print("\n" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    n = len(result.regressions)
    if n:
        print(f"FAIL: {n} regression(s) of {args.new} against {args.base}", file=sys.stderr)
        return 1
    print(f"OK: no regression of {args.new} against {args.base}")
    return 0
