"""A bank of simulated benchmark series through ``lvm history detect``'s detector, asv's step detection and Apache
Otava, side by side in one run: precision, recall, false alarms per 1,000 commits and detection delay per class.

Run it in a venv with the ``bank`` extra (Otava pins numpy exactly, so not the project's venv)::

    python3 -m venv .venv-bank && .venv-bank/bin/pip install -e '.[bank]'   # or: pip install asv apache-otava ruptures
    PYTHONPATH=. nice -n 10 .venv-bank/bin/python tools/history_bank.py [--scale 1.0] [--json OUT]

Each series has ``LENGTH`` commits of log-normal noise (CV = coefficient of variation); the change, where there is
one, comes at commit ``CHANGE_AT``. Classes:

    null-cv{0.5,1,2,5}   no change                                           (every alarm is false)
    step5-cv1            +-5 % step at 1 % CV                                (target: >= 95 % found within 3 commits)
    step{2,10,20}        +-2/10/20 % steps at CV 0.5, 2 and 5 %
    drift                +0.25 %/commit for the last 20 commits at 1 % CV     (a hit: any alarm in the drift)
    outliers             no change, 1 % CV, 5 % of points x1.5..x3
    contended            no change, 1 % CV, 10 % of points x1.2..x1.6 flagged contended
    fingerprint          no change, 1 % CV, another machine 30 % faster from commit 30

What each detector sees: ours gets the contended flag and the machine of each point (it leaves contended points out
and splits segments at the machine change, as ``lvm history detect`` does); asv and Otava get the plain series (they
have neither notion), as they would in CI.

Parameters (stated, and the same for every class):
- ours: ``lvmharness.history.detect.Params()`` defaults (PELT L2 penalty 3 ln n, the z threshold, magnitude
  >= 1 %); every change it reports is an alarm, "suspicious" ones (fewer than 3 points after them) included, as
  every change the other two report is;
- asv 0.6: ``asv.step_detect.detect_steps`` (penalised L1 Potts fit, gamma chosen by asv's own cross-validation);
  each boundary between steps whose values differ by >= 1 % (our minimum magnitude) is an alarm (asv's own
  ``detect_regressions`` reports upward steps only, with a 5 % default threshold: the boundary rule treats both
  directions alike);
- Otava 0.8: ``otava.analysis.compute_change_points`` with its defaults (window 50, p-value 0.001, no minimum
  magnitude), and again at p-value ``OTAVA_STRICT_P``, its false-alarm rate on unchanged series matched to ours.

A true change is found when an alarm in the right direction lies within 2 commits of it; every other alarm is
false (an alarm 3 or more commits off a real change included, and a second alarm for one change). Delay: the
number of commits after the change commit that had to be added before a detector run over the history so far
reported it (0: on the change commit itself); searched up to 8.

Runs with a false alarm: on each series without a change, the detector run over its first 20, 24, ..., 60 points,
as CI runs it after each commit; per 1,000 such runs, how many reported anything (every report there is false).

A detector that alarms more finds more, so each tool is compared with the ``lvm history`` setting whose false alarms
are no more frequent than its own (``MATCHED``): asv and Otava at p = 1e-5 with the defaults, Otava's defaults with
both thresholds at ``LOOSE_Z``. "At least as good" is tested, not read off the point estimates: per class and per
measure (precision, recall, false alarms per 1,000 commits, runs with a false alarm, found within 3 commits), the
difference between the matched pair on the same series is bootstrapped (``BOOT`` resamples of the class's series,
paired: one resample feeds all detectors) and its 95 % percentile interval decides: ``better`` or ``worse`` when the
interval excludes 0, else a tie. The verdict column lists the measures that are not ties. """

from __future__ import annotations

import argparse
import itertools
import json
import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from lvmharness.history import detect

LENGTH = 60
CHANGE_AT = 40
MATCH = 2  # commits either side of the true change point
MAX_DELAY = 8
# Otava a second time, at the p-value where its false alarms on the unchanged series fall to ours (none): a
# detector that alarms more finds more, so the fair test of power is at an equal false-alarm rate (on seed 1 at
# scale 4: 0.83-1.17 per 1,000 unchanged commits at p = 0.001, 0.06 at 1e-4, 0 at 1e-5).
OTAVA_STRICT_P = 1e-5
BOOT = 2000  # bootstrap resamples per class for the paired comparison
ONLINE_FROM, ONLINE_STEP = 20, 4  # the CI runs replayed on a series without a change: its first 20, 24, ... 60 points
MIN_MAGNITUDE = detect.Params().min_magnitude  # asv's boundaries: the same minimum change as ours


@dataclass
class Series:
    cls: str
    values: np.ndarray
    contended: np.ndarray  # bool per point
    machine: np.ndarray  # int per point
    change: int | None  # index of the first point at the new level
    direction: int = 0  # +1 up (slower: a regression), -1 down
    drift: bool = False


def _noise(rng: np.random.Generator, cv: float, n: int = LENGTH) -> np.ndarray:
    sigma = math.sqrt(math.log(1 + cv * cv))  # log-normal with this coefficient of variation
    return np.exp(rng.normal(0, sigma, n))


def bank(seed: int, scale: float) -> list[Series]:
    rng = np.random.default_rng(seed)
    none = np.zeros(LENGTH, dtype=bool)
    zeros = np.zeros(LENGTH, dtype=int)
    out: list[Series] = []

    def n(k: int) -> int:
        return max(2, round(k * scale))

    for cv in (0.005, 0.01, 0.02, 0.05):
        out += [Series(f"null-cv{cv * 100:g}", 100 * _noise(rng, cv), none, zeros, None) for _ in range(n(50))]
    for i in range(n(100)):
        d = 1 if i % 2 == 0 else -1
        y = 100 * _noise(rng, 0.01)
        y[CHANGE_AT:] *= 1 + 0.05 * d
        out.append(Series("step5-cv1", y, none, zeros, CHANGE_AT, d))
    for size in (0.02, 0.10, 0.20):
        for cv in (0.005, 0.02, 0.05):
            for i in range(n(10)):
                d = 1 if i % 2 == 0 else -1
                y = 100 * _noise(rng, cv)
                y[CHANGE_AT:] *= 1 + size * d
                out.append(Series(f"step{size * 100:g}", y, none, zeros, CHANGE_AT, d))
    for _ in range(n(50)):
        y = 100 * _noise(rng, 0.01)
        y[CHANGE_AT:] *= 1 + 0.0025 * np.arange(1, LENGTH - CHANGE_AT + 1)
        out.append(Series("drift", y, none, zeros, CHANGE_AT, 1, drift=True))
    for _ in range(n(50)):
        y = 100 * _noise(rng, 0.01)
        idx = rng.choice(LENGTH, size=LENGTH // 20, replace=False)
        y[idx] *= rng.uniform(1.5, 3.0, idx.size)
        out.append(Series("outliers", y, none, zeros, None))
    for _ in range(n(50)):
        y = 100 * _noise(rng, 0.01)
        busy = np.zeros(LENGTH, dtype=bool)
        busy[rng.choice(LENGTH, size=LENGTH // 10, replace=False)] = True
        y[busy] *= rng.uniform(1.2, 1.6, int(busy.sum()))
        out.append(Series("contended", y, busy, zeros, None))
    for _ in range(n(50)):
        y = 100 * _noise(rng, 0.01)
        machine = np.zeros(LENGTH, dtype=int)
        machine[30:] = 1
        y[30:] *= 0.7
        out.append(Series("fingerprint", y, none, machine, None))
    return out


# --- the three detectors: each returns [(index of the first point at the new level, +1 up / -1 down)] ---------------

Alarms = list[tuple[int, int]]


PARAMS = detect.Params()  # main() may replace it (--z-threshold, --z-suspicious)
# lvm history a second time, both thresholds at 3.0: its false alarms stay under those of Otava's defaults on every
# class (seed 1, scale 4: 0.25-0.5 against 0.58-1.17 per 1,000 unchanged commits; 2.5 and 2.75 found no more)
LOOSE_Z = 3.0


def ours(s: Series, upto: int, params: detect.Params | None = None) -> Alarms:
    alarms: Alarms = []
    y, busy, machine = s.values[:upto], s.contended[:upto], s.machine[:upto]
    start = 0
    for end in [*np.flatnonzero(np.diff(machine)) + 1, upto]:  # one segment per machine
        keep = [i for i in range(start, int(end)) if not busy[i]]
        for c in detect.detect_measured(list(y[keep]), "lower", params or PARAMS):
            alarms.append((keep[c.index], 1 if c.magnitude > 0 else -1))
        start = int(end)
    return alarms


def ours_loose(s: Series, upto: int) -> Alarms:
    return ours(s, upto, detect.Params(z_threshold=LOOSE_Z, z_suspicious=LOOSE_Z))


def asv_steps(s: Series, upto: int) -> Alarms:
    from asv.step_detect import detect_steps

    steps = detect_steps(list(s.values[:upto]))
    out: Alarms = []
    for prev, cur in itertools.pairwise(steps):
        rel = cur[2] / prev[2] - 1
        if abs(rel) >= MIN_MAGNITUDE:
            out.append((cur[0], 1 if rel > 0 else -1))
    return out


def otava(s: Series, upto: int, max_pvalue: float = 0.001) -> Alarms:
    from otava.analysis import compute_change_points

    cps, _ = compute_change_points(list(s.values[:upto]), max_pvalue=max_pvalue)
    return [(cp.index, 1 if cp.stats.forward_rel_change() > 0 else -1) for cp in cps]


def otava_strict(s: Series, upto: int) -> Alarms:
    return otava(s, upto, OTAVA_STRICT_P)


OURS, OURS_LOOSE, OTAVA_STRICT = "lvm history", f"lvm history z={LOOSE_Z:g}", f"otava p={OTAVA_STRICT_P:g}"
DETECTORS: dict[str, Callable[[Series, int], Alarms]] = {
    OURS: ours, OURS_LOOSE: ours_loose, "asv": asv_steps, "otava": otava, OTAVA_STRICT: otava_strict}
# Each other detector against the lvm history setting at its false-alarm rate (no higher): asv and Otava at
# p = 1e-5 alarm as rarely as lvm history's defaults, Otava's defaults more often than both thresholds at 3.0.
MATCHED = {"asv": OURS, OTAVA_STRICT: OURS, "otava": OURS_LOOSE}


# --- scoring ----------------------------------------------------------------------------------------------------------


@dataclass
class Score:
    """One detector's outcome on each series of one class (parallel lists, one entry per series)."""

    changes: list[bool] = field(default_factory=list)  # the series has a true change
    hits: list[bool] = field(default_factory=list)  # ... and an alarm found it
    false: list[int] = field(default_factory=list)  # false alarms on the series
    delays: list[int | None] = field(default_factory=list)  # of a found change (None: not found by MAX_DELAY)
    runs_alarmed: list[int] = field(default_factory=list)  # replayed CI runs with an alarm (no-change series)
    seconds: float = 0.0

    @property
    def series(self) -> int:
        return len(self.changes)

    def measures(self, idx: np.ndarray | None = None) -> dict[str, float | None]:
        """precision, recall, false alarms per 1,000 commits and found within 3 commits over the series ``idx``
        (all by default; a bootstrap resample repeats some)."""
        idx = np.arange(self.series) if idx is None else idx
        ch = np.asarray(self.changes)[idx]
        hit = np.asarray(self.hits)[idx]
        false = np.asarray(self.false)[idx]
        w3 = np.asarray([d is not None and d <= 3 for d in self.delays])[idx]
        hits, alarms, changes = int(hit.sum()), int(hit.sum() + false.sum()), int(ch.sum())
        runs = np.asarray(self.runs_alarmed)[idx][~ch]
        return {
            "precision": hits / alarms if alarms else None,
            "recall": hits / changes if changes else None,
            "false_per_1000_commits": 1000 * float(false.sum()) / (idx.size * LENGTH),
            "found_within_3": float(w3.sum()) / changes if changes else None,
            "false_per_1000_runs": 1000 * float(runs.sum()) / (runs.size * len(ONLINE_RUNS)) if runs.size else None,
        }

    def row(self) -> dict[str, float | int | None]:
        found = [d for d in self.delays if d is not None]
        return {"series": self.series, "changes": sum(self.changes), **self.measures(),
                "median_delay": float(np.median(found)) if found else None, "seconds": round(self.seconds, 1)}


HIGHER_IS_BETTER = {"precision": True, "recall": True, "false_per_1000_commits": False, "found_within_3": True,
                    "false_per_1000_runs": False}
ONLINE_RUNS = range(ONLINE_FROM, LENGTH + 1, ONLINE_STEP)


def compare(a: Score, b: Score, seed: int) -> dict[str, str]:
    """Paired bootstrap of ``a`` - ``b`` per measure (see the module docstring): 'better', 'worse' or 'tie' for
    ``a``. A measure neither has (precision of a detector that never alarms) is left out."""
    rng = np.random.default_rng(seed)
    n = a.series
    diffs: dict[str, list[float]] = {m: [] for m in HIGHER_IS_BETTER}
    for _ in range(BOOT):
        idx = rng.integers(0, n, n)
        ma, mb = a.measures(idx), b.measures(idx)
        for m in HIGHER_IS_BETTER:
            va, vb = ma[m], mb[m]
            if m == "precision":  # no alarm at all is a precision of 1: nothing false was said
                va, vb = (1.0 if va is None else va), (1.0 if vb is None else vb)
            if va is not None and vb is not None:
                diffs[m].append(va - vb)
    out = {}
    for m, d in diffs.items():
        if len(d) < BOOT // 2 or not np.any(np.asarray(d)):
            continue
        lo, hi = np.percentile(d, [2.5, 97.5])
        if lo <= 0 <= hi:
            out[m] = "tie"
        else:
            out[m] = "better" if (lo > 0) == HIGHER_IS_BETTER[m] else "worse"
    return out


def _hit(alarm: tuple[int, int], s: Series) -> bool:
    if s.change is None:
        return False
    i, d = alarm
    if s.drift:
        return i >= s.change - MATCH and d == s.direction
    return abs(i - s.change) <= MATCH and d == s.direction


def score(series: list[Series], name: str) -> dict[str, Score]:
    fn = DETECTORS[name]
    scores: dict[str, Score] = {}
    for s in series:
        sc = scores.setdefault(s.cls, Score())
        t0 = time.perf_counter()
        alarms = fn(s, LENGTH)
        hits = [a for a in alarms if _hit(a, s)]
        false = len(alarms) - len(hits) + max(0, len(hits) - 1)  # one change found twice: the second is extra
        delay = None
        runs_alarmed = 0
        if s.change is not None:
            for d in range(MAX_DELAY + 1):
                if any(_hit(a, s) for a in fn(s, s.change + 1 + d)):
                    delay = d
                    break
        else:  # what CI shows run after run on a series that never changes: every alarm in any run is false
            runs_alarmed = sum(bool(fn(s, upto)) for upto in ONLINE_RUNS)
        sc.changes.append(s.change is not None)
        sc.hits.append(bool(hits))
        sc.false.append(false)
        sc.delays.append(delay)
        sc.runs_alarmed.append(runs_alarmed)
        sc.seconds += time.perf_counter() - t0
    return scores


SHORT = {"precision": "precision", "recall": "recall", "false_per_1000_commits": "false alarms",
         "found_within_3": "within 3", "false_per_1000_runs": "false runs"}


def verdicts(results: dict[str, dict[str, Score]], seed: int) -> dict[str, dict[str, dict[str, str]]]:
    """{class: {other detector: {measure: better|worse|tie}}}: its ``MATCHED`` lvm history setting against each
    other detector that ran beside it."""
    out: dict[str, dict[str, dict[str, str]]] = {}
    for name, mine in MATCHED.items():
        if name in results and mine in results:
            for cls, sc in results[mine].items():
                out.setdefault(cls, {})[name] = compare(sc, results[name][cls], seed)
    return out


def table(results: dict[str, dict[str, Score]], seed: int = 0) -> str:
    classes = list(next(iter(results.values())))
    ver = verdicts(results, seed)
    head = "| class | series | detector | precision | recall | false alarms / 1000 commits | runs with a false " \
           "alarm / 1000 | found within 3 commits | median delay | matched lvm history against it (95 % paired " \
           "bootstrap) | s |"
    lines = [head, "|" + "---|" * 11]

    def f(v: float | int | None, pct: bool = True) -> str:
        if v is None:
            return "-"
        return f"{v:.0%}" if pct else f"{v:.2f}"

    for cls in classes:
        for name, scores in results.items():
            r = scores[cls].row()
            v = ver.get(cls, {}).get(name, {})
            said = ", ".join(f"{w} {SHORT[m]}" for m, w in v.items() if w != "tie")
            cell = f"{MATCHED[name]}: {said or 'ties'}" if name in ver.get(cls, {}) else ""
            lines.append(f"| {cls} | {r['series']} | {name} | {f(r['precision'])} | {f(r['recall'])} | "
                         f"{f(r['false_per_1000_commits'], False)} | {f(r['false_per_1000_runs'], False)} | "
                         f"{f(r['found_within_3'])} | "
                         f"{f(r['median_delay'], False)} | {cell} | {r['seconds']} |")
    worse = [(cls, name, m) for cls, vs in ver.items() for name, v in vs.items() for m, w in v.items() if w == "worse"]
    lines.append("")
    lines.append("lvm history significantly worse than a detector at the same false-alarm rate: "
                 + ("; ".join(f"{cls} {SHORT[m]} against {name} ({MATCHED[name]})" for cls, name, m in worse)
                    if worse else "nowhere"))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    global PARAMS
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--scale", type=float, default=1.0, help="series per class x this (default 1.0: 590 series)")
    p.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated subset of " + ", ".join(DETECTORS))
    p.add_argument("--z-threshold", type=float, default=PARAMS.z_threshold,
                   help=f"lvm history's confirmation threshold (default {PARAMS.z_threshold})")
    p.add_argument("--z-suspicious", type=float, default=PARAMS.z_suspicious,
                   help=f"... for a change among the newest points (default {PARAMS.z_suspicious})")
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    PARAMS = detect.Params(z_threshold=args.z_threshold, z_suspicious=args.z_suspicious)
    series = bank(args.seed, args.scale)
    results = {}
    for name in args.detectors.split(","):
        t0 = time.perf_counter()
        results[name] = score(series, name)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(f"{len(series)} series of {LENGTH} commits, change at commit {CHANGE_AT}, seed {args.seed}, "
          f"lvm history z >= {PARAMS.z_threshold} (suspicious: {PARAMS.z_suspicious})\n")
    print(table(results, args.seed))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({"rows": {n: {c: s.row() for c, s in r.items()} for n, r in results.items()},
                       "verdicts": verdicts(results, args.seed)}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
