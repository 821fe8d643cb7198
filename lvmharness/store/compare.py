"""``lvm compare BASE NEW``: every declared value key by its rule, and an exit code a CI gate can trust.

The rule, the direction and whether a value is measured on the machine come from ``lvmharness.store.keys`` (one table):
  * ``exact`` (params, MACs, FLOPs, graph structure): any change is a regression — they are counted, not timed;
  * ``samples`` (latency p50): decided on the raw samples — a seeded percentile bootstrap of the ratio of medians
    (new ÷ base); a regression only when the whole confidence interval lies above 1 + ``latency_threshold``, an
    improvement only when it lies wholly below 1 - ``latency_threshold``; without samples on both sides, the
    point ratio against the same threshold (which can show a regression, never claim an improvement);
  * ``relative`` (memory in bytes): worse by more than ``mem_tolerance`` is a regression, better an improvement;
  * ``points`` (top-1/top-5 in %): worse by more than ``acc_tolerance`` points is a regression;
  * status: ok → oom/error/skipped is a regression, and so is anything → error (oom/error → ok an
    improvement).
A measured value (timed or memory) decides nothing when the pair cannot show a change of the code: either record
was taken on a busy machine (``values["contended"]``: "inconclusive") or the two come from different machines
(top-level ``fingerprint``: "cross-machine", unless ``cross_machine``). Counted values compare everywhere.

The gate cannot pass by mistake: a metric named on the command line that neither side has, a non-finite or
negative threshold, and a comparison that decided nothing at all are errors (exit 2), not "OK"; and a case of BASE
missing from NEW (a killed or partial run) fails the gate (exit 1) unless ``--allow-missing``.
A case present on one side only is reported, never a crash; of duplicate case ids the last record wins (a re-run).
"""

from __future__ import annotations

import argparse
import math
import random
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvmharness.core.errors import UserError
from lvmharness.core.stats import median
from lvmharness.store import keys
from lvmharness.store.results import load_records

UNKNOWN_MACHINE = "unknown"  # the fingerprint of a record that carries none
# Verdicts that decide something; the others (missing, added, inconclusive, cross-machine) decide nothing.
DECIDED = ("regression", "improvement", "same", "noise")


class CompareError(UserError, ValueError):
    """A comparison that cannot be trusted to mean anything: bad rules, an unknown metric, nothing compared."""


def _is_tolerance(value: Any) -> bool:
    """A threshold or tolerance must be a finite number >= 0 (nan would make every test false: a silent pass)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_tolerance(name: str, value: float) -> float:
    if not _is_tolerance(value):
        raise CompareError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Rules:
    latency_threshold: float = 0.10  # a slowdown must exceed 10 % with confidence to count
    confidence: float = 0.95
    mem_tolerance: float = 0.05  # relative
    acc_tolerance: float = 0.5  # percentage points
    bootstrap: int = 2000
    seed: int = 0
    cross_machine: bool = False  # decide measured values of records from different machines too

    def __post_init__(self) -> None:
        check_tolerance("latency_threshold", self.latency_threshold)
        check_tolerance("mem_tolerance", self.mem_tolerance)
        check_tolerance("acc_tolerance", self.acc_tolerance)
        if not 0 < self.confidence < 1:
            raise CompareError(f"confidence must be in (0, 1), got {self.confidence!r}")
        if self.bootstrap < 1:
            raise CompareError(f"bootstrap must be >= 1 resamples, got {self.bootstrap!r}")


@dataclass
class Finding:
    case_id: str
    key: str
    base: Any
    new: Any
    verdict: str  # regression | improvement | same | noise | missing | added | inconclusive | cross-machine
    detail: str = ""


@dataclass
class Comparison:
    findings: list[Finding] = field(default_factory=list)

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "regression"]

    @property
    def decided(self) -> int:
        """Values (and statuses) that the rules actually decided."""
        return sum(f.verdict in DECIDED for f in self.findings)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.verdict] = out.get(f.verdict, 0) + 1
        return dict(sorted(out.items()))

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
    """(ratio of medians new/base, CI low, CI high) by a seeded percentile bootstrap (Efron & Tibshirani 1993,
    ch. 13): resample each side with replacement, take the ratio of the resampled medians, read the
    (1 - confidence)/2 and (1 + confidence)/2 quantiles of those ratios."""
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


def _samples(case: str, key: keys.Key, b: dict[str, Any], n: dict[str, Any], rules: Rules) -> Finding:
    assert key.samples is not None
    bs, ns = b["values"].get(key.samples), n["values"].get(key.samples)
    bv, nv = b["values"][key.name], n["values"][key.name]
    worse, better = ("slower", "faster") if key.better == "lower" else ("lower", "higher")
    # The interval needs three finite rounds a side, and positive ones: it is a ratio of medians (a round of 0 ms
    # is a clock too coarse for the case, and would divide by zero).
    if bs and ns and len(bs) >= 3 and len(ns) >= 3 and None not in bs and None not in ns and min(bs) > 0 \
            and min(ns) > 0:
        ratio, lo, hi = median_ratio_ci(bs, ns, rules)
        ci = f"x{ratio:.3f}, {rules.confidence:.0%} CI [{lo:.3f}, {hi:.3f}], threshold {rules.latency_threshold:.0%}"
        if key.better == "higher":  # orient so that a ratio above 1 is always worse
            lo, hi = 1 / hi, 1 / lo
        if lo > 1 + rules.latency_threshold:
            return Finding(case, key.name, bv, nv, "regression", f"{worse}: {ci}")
        if hi < 1 - rules.latency_threshold:
            return Finding(case, key.name, bv, nv, "improvement", f"{better}: {ci}")
        return Finding(case, key.name, bv, nv, "noise", "within noise/threshold: " + ci)
    ratio = nv / bv if bv else math.inf
    detail = f"x{ratio:.3f} (no usable raw samples: compared the point values against the threshold)"
    oriented = ratio if key.better == "lower" else (1 / ratio if ratio else math.inf)
    if oriented > 1 + rules.latency_threshold:
        return Finding(case, key.name, bv, nv, "regression", detail)
    return Finding(case, key.name, bv, nv, "same" if nv == bv else "noise", detail)


def _exact(case: str, key: keys.Key, bv: Any, nv: Any) -> Finding:
    if bv == nv:
        return Finding(case, key.name, bv, nv, "same")
    return Finding(case, key.name, bv, nv, "regression",
                   "deterministic value changed (update the baseline if intended)")


def _relative(case: str, key: keys.Key, bv: Any, nv: Any, rules: Rules) -> Finding:
    if not bv:
        return Finding(case, key.name, bv, nv, "same" if bv == nv else "noise", "base is 0: no relative change")
    rel = (nv - bv) / abs(bv)
    worse = rel if key.better == "lower" else -rel
    detail = f"{rel:+.1%} (tolerance {rules.mem_tolerance:.0%})"
    if worse > rules.mem_tolerance:
        return Finding(case, key.name, bv, nv, "regression", detail)
    if worse < -rules.mem_tolerance:
        return Finding(case, key.name, bv, nv, "improvement", detail)
    return Finding(case, key.name, bv, nv, "same" if rel == 0 else "noise", detail)


def _points(case: str, key: keys.Key, bv: Any, nv: Any, rules: Rules) -> Finding:
    diff = nv - bv
    worse = -diff if key.better == "higher" else diff
    detail = f"{diff:+.2f} points (tolerance {rules.acc_tolerance:g})"
    if worse > rules.acc_tolerance:
        return Finding(case, key.name, bv, nv, "regression", detail)
    if worse < -rules.acc_tolerance:
        return Finding(case, key.name, bv, nv, "improvement", detail)
    return Finding(case, key.name, bv, nv, "same" if diff == 0 else "noise", detail)


def fingerprint(record: dict[str, Any]) -> str:
    fp = record.get("fingerprint")
    return fp if isinstance(fp, str) and fp else UNKNOWN_MACHINE


def _why_undecidable(b: dict[str, Any], n: dict[str, Any], rules: Rules) -> tuple[str, str] | None:
    """(verdict, detail) when a pair's measured values cannot show a change of the code; None when they can."""
    fb, fn = fingerprint(b), fingerprint(n)
    if fb != fn and not rules.cross_machine:
        return "cross-machine", f"measured on machine {fb} vs {fn} (pass --cross-machine to compare anyway)"
    busy = [side for side, r in (("base", b), ("new", n)) if any(r["values"].get(k) is True for k in keys.FLAG_KEYS)]
    if busy:
        return "inconclusive", f"{' and '.join(busy)} measured on a busy machine (contended)"
    return None


def _index(records: Iterable[dict[str, Any]], metrics: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if metrics and r["metric"] not in metrics:
            continue
        out[r["case_id"]] = r  # a re-run case: the last record wins
    return out


def compare_records(base: list[dict[str, Any]], new: list[dict[str, Any]], rules: Rules | None = None,
                    metrics: Sequence[str] | None = None) -> Comparison:
    rules = rules or Rules()
    if metrics:
        present = {r["metric"] for r in [*base, *new]}
        unknown = sorted(set(metrics) - present)
        if unknown:
            raise CompareError(f"metric(s) {', '.join(map(repr, unknown))} are in neither run; the runs have: "
                               f"{', '.join(sorted(present)) or 'no records'}")
    b_idx, n_idx = _index(base, metrics), _index(new, metrics)
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
            # A case that stopped working is a regression, and so is one that now crashes where it used to end in
            # an out-of-memory or a skip: an error is never a result. Back to ok is an improvement.
            verdict = "regression" if bs == "ok" or ns == "error" else ("improvement" if ns == "ok" else "noise")
            result.findings.append(Finding(case, "status", bs, ns, verdict, n.get("error") or ""))
            continue
        if bs != "ok":
            continue
        undecidable = _why_undecidable(b, n, rules)
        for name in sorted(b["values"].keys() & n["values"].keys()):
            key = keys.get(name)
            bv, nv = b["values"][name], n["values"][name]
            if key is None or key.rule in ("none", "flag") or bv is None or nv is None:
                continue
            if key.measured and undecidable is not None:
                result.findings.append(Finding(case, name, bv, nv, *undecidable))
            elif key.rule == "exact":
                result.findings.append(_exact(case, key, bv, nv))
            elif key.rule == "samples":
                result.findings.append(_samples(case, key, b, n, rules))
            elif key.rule == "relative":
                result.findings.append(_relative(case, key, bv, nv, rules))
            else:
                result.findings.append(_points(case, key, bv, nv, rules))
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
        keep = {k: v for k, v in r["values"].items() if k in keys.EXACT_KEYS}
        rec = {k: v for k, v in r.items() if k != "created_utc"}
        out.append({**rec, "values": keep, "provenance": {"counter": r["provenance"].get("counter")},
                    "run_id": "baseline"})
    out.sort(key=lambda r: r["case_id"])
    return out


# --- lvm compare ---------------------------------------------------------------------------------------------------


def _tolerance(text: str) -> float:
    """argparse type of the threshold options (argparse itself names the option in its error)."""
    try:
        value = float(text) if text.isascii() else math.nan  # float() also reads '٥' (Arabic-Indic five)
    except ValueError:
        value = math.nan
    if not _is_tolerance(value):
        from lvmharness.core.parsing import shorten

        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {shorten(text)!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base")
    p.add_argument("new", nargs="?")
    p.add_argument("--metric", action="append", help="only these metrics (repeatable), e.g. --metric flops")
    p.add_argument("--latency-threshold", type=_tolerance, default=0.10,
                   help="relative slowdown that counts, a fraction (default 0.10)")
    p.add_argument("--mem-tolerance", type=_tolerance, default=0.05,
                   help="relative memory growth allowed, a fraction (default 0.05)")
    p.add_argument("--acc-tolerance", type=_tolerance, default=0.5,
                   help="top-1/top-5 drop allowed, in points (default 0.5)")
    p.add_argument("--cross-machine", action="store_true",
                   help="also decide latency/memory of records measured on different machines (fingerprints)")
    p.add_argument("--all", action="store_true", help="also list values that did not change")
    # A baseline pooled from the history (lvmharness.history.gate): `lvm compare NEW --baseline history:main~5`.
    p.add_argument("--baseline", help="history:BRANCH[~N]: pool the last N uncontended runs of BRANCH on this "
                   "machine as BASE (then the one positional is NEW); exit 3 no baseline, 4 inconclusive")
    p.add_argument("--history", help="history folder for --baseline (default $LVM_HISTORY or .lvm-history)")
    p.add_argument("--allow-missing", action="store_true",
                   help="pass even when cases of BASE are missing from NEW (a partial run); default: exit 1")


def run(args: argparse.Namespace) -> int:
    from lvmharness.history import gate

    if args.baseline or gate.is_spec(args.base):  # a history baseline: the gate pools it, then compares as below
        if args.baseline and args.new is not None:
            raise CompareError("with --baseline give only NEW (the baseline comes from the history)")
        spec, new = (args.baseline, args.base) if args.baseline else (args.base, args.new)
        if new is None:
            raise CompareError(f"{spec} needs a NEW run folder to compare")
        rules = Rules(latency_threshold=args.latency_threshold, mem_tolerance=args.mem_tolerance,
                      acc_tolerance=args.acc_tolerance, cross_machine=args.cross_machine)
        return gate.run_gate(args, spec, new, rules, compare_records)
    if args.new is None:
        raise CompareError("lvm compare needs BASE and NEW (or NEW --baseline history:BRANCH[~N])")
    rules = Rules(latency_threshold=args.latency_threshold, mem_tolerance=args.mem_tolerance,
                  acc_tolerance=args.acc_tolerance, cross_machine=args.cross_machine)
    result = compare_paths(args.base, args.new, rules, args.metric or None)
    from lvmharness.store.results import torn_lines

    for note in (n for r in (args.base, args.new) for n in torn_lines(r)):
        print(f"lvm compare: {note}", file=sys.stderr)
    print(result.table(show_all=args.all))
    counts = result.counts()
    print("\n" + (", ".join(f"{v} {k}" for k, v in counts.items()) or "no records"))
    if not result.decided:
        raise CompareError(f"nothing was compared between {args.base} and {args.new} "
                           f"({', '.join(f'{v} {k}' for k, v in counts.items()) or 'no cases'}): the gate decided "
                           "nothing, so it cannot pass")
    n = len(result.regressions)
    if n:
        print(f"FAIL: {n} regression(s) of {args.new} against {args.base}", file=sys.stderr)
        return 1
    missing = [f.case_id for f in result.findings if f.verdict == "missing"]
    if missing and not args.allow_missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
        print(f"FAIL: {len(missing)} case(s) of {args.base} are missing from {args.new} ({shown}): a killed or "
              "partial run cannot pass the gate; pass --allow-missing to judge only the cases both have",
              file=sys.stderr)
        return 1
    print(f"OK: no regression of {args.new} against {args.base} ({result.decided} values decided)")
    return 0
