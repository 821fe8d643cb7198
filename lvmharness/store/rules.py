"""The compare rules: ONE table saying how each rule of ``keys.Key.rule`` decides a pair of values, and which
tolerance (with its command-line option and default) it is judged against.

A value key names its rule in ``lvmharness.store.keys`` (one line per key); the rule's decision and tolerance live
here (one entry per rule); ``lvm compare``'s options and ``Rules``' checks are read off ``TOLERANCES``. Adding a key
is one ``Key(...)`` line; adding a rule is one ``RULES`` entry (plus its ``Tolerance`` if it has one).

  ``exact``     counted, deterministic: any change is a regression (params, MACs, graph structure);
  ``samples``   timed: decided on the raw samples in ``Key.samples``: a seeded percentile bootstrap of the ratio of
                medians (new / base); a regression only when the whole confidence interval lies above
                1 + ``latency_threshold``, an improvement only when it lies wholly below 1 - ``latency_threshold``;
                without usable samples, the point ratio against the same threshold (which can show a regression,
                never claim an improvement);
  ``relative``  a relative change beyond ``mem_tolerance`` (memory in bytes);
  ``points``    an absolute change beyond ``acc_tolerance`` points (accuracy in %);
  ``flag``      a condition of the measurement, not a result: true on either side makes every measured value of
                the pair inconclusive (``contended``; see ``compare``);
  ``none``      stored and reported, never compared.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lvmharness.core.errors import UserError
from lvmharness.core.stats import median
from lvmharness.store.keys import Key, Rule


class CompareError(UserError, ValueError):
    """A comparison that cannot be trusted to mean anything: bad rules, an unknown metric, nothing compared."""


@dataclass(frozen=True)
class Tolerance:
    """A threshold a rule is judged against: a ``Rules`` field and the ``lvm compare`` option that sets it."""

    field: str
    option: str
    default: float
    help: str


TOLERANCES: dict[str, Tolerance] = {t.field: t for t in (
    Tolerance("latency_threshold", "--latency-threshold", 0.10,
              "relative slowdown that counts, a fraction (default 0.10)"),
    Tolerance("mem_tolerance", "--mem-tolerance", 0.05, "relative memory growth allowed, a fraction (default 0.05)"),
    Tolerance("acc_tolerance", "--acc-tolerance", 0.5, "top-1/top-5 drop allowed, in points (default 0.5)"),
)}


def is_tolerance(value: Any) -> bool:
    """A threshold or tolerance must be a finite number >= 0 (nan would make every test false: a silent pass)."""
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value) and value >= 0


def check_tolerance(name: str, value: float) -> float:
    if not is_tolerance(value):
        raise CompareError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class Rules:
    latency_threshold: float = TOLERANCES["latency_threshold"].default  # a slowdown must exceed it with confidence
    confidence: float = 0.95
    mem_tolerance: float = TOLERANCES["mem_tolerance"].default  # relative
    acc_tolerance: float = TOLERANCES["acc_tolerance"].default  # percentage points
    bootstrap: int = 2000
    seed: int = 0
    cross_machine: bool = False  # decide measured values of records from different machines too

    def __post_init__(self) -> None:
        for name in TOLERANCES:
            check_tolerance(name, getattr(self, name))
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


def _usable(samples: Any) -> bool:
    """The interval needs three finite rounds a side, and positive ones: it is a ratio of medians (a round of 0 ms
    is a clock too coarse for the case, and would divide by zero)."""
    return bool(samples) and len(samples) >= 3 and None not in samples and min(samples) > 0


def decide_samples(case: str, key: Key, b: dict[str, Any], n: dict[str, Any], rules: Rules) -> Finding:
    assert key.samples is not None
    bs, ns = b["values"].get(key.samples), n["values"].get(key.samples)
    bv, nv = b["values"][key.name], n["values"][key.name]
    worse, better = ("slower", "faster") if key.better == "lower" else ("lower", "higher")
    if _usable(bs) and _usable(ns):
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


def decide_exact(case: str, key: Key, b: dict[str, Any], n: dict[str, Any], rules: Rules) -> Finding:
    bv, nv = b["values"][key.name], n["values"][key.name]
    if bv == nv:
        return Finding(case, key.name, bv, nv, "same")
    return Finding(case, key.name, bv, nv, "regression",
                   "deterministic value changed (update the baseline if intended)")


def decide_relative(case: str, key: Key, b: dict[str, Any], n: dict[str, Any], rules: Rules) -> Finding:
    bv, nv = b["values"][key.name], n["values"][key.name]
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


def decide_points(case: str, key: Key, b: dict[str, Any], n: dict[str, Any], rules: Rules) -> Finding:
    bv, nv = b["values"][key.name], n["values"][key.name]
    diff = nv - bv
    worse = -diff if key.better == "higher" else diff
    detail = f"{diff:+.2f} points (tolerance {rules.acc_tolerance:g})"
    if worse > rules.acc_tolerance:
        return Finding(case, key.name, bv, nv, "regression", detail)
    if worse < -rules.acc_tolerance:
        return Finding(case, key.name, bv, nv, "improvement", detail)
    return Finding(case, key.name, bv, nv, "same" if diff == 0 else "noise", detail)


Decide = Callable[[str, Key, dict[str, Any], dict[str, Any], Rules], Finding]


@dataclass(frozen=True)
class RuleSpec:
    decide: Decide | None  # None: the rule decides nothing by itself (``flag``, ``none``)
    tolerance: str | None = None  # the ``TOLERANCES`` entry it is judged against
    pooled: str = "median"  # how the history gate pools N runs' values: "median" or "latest" (counted values)


RULES: dict[Rule, RuleSpec] = {
    "exact": RuleSpec(decide_exact, pooled="latest"),
    "samples": RuleSpec(decide_samples, "latency_threshold"),
    "relative": RuleSpec(decide_relative, "mem_tolerance"),
    "points": RuleSpec(decide_points, "acc_tolerance"),
    "flag": RuleSpec(None),
    "none": RuleSpec(None),
}
