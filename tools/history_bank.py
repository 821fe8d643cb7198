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
- ours: ``lvmharness.history.detect.Params()`` defaults (PELT L2 penalty 3 ln n, z >= 5.0, magnitude >= 1 %,
  3 points after a change before it is labelled; "suspicious" labels are not counted as alarms);
- asv 0.6: ``asv.step_detect.detect_steps`` (penalised L1 Potts fit, gamma chosen by asv's own cross-validation);
  each boundary between steps whose values differ by >= 1 % (our minimum magnitude) is an alarm (asv's own
  ``detect_regressions`` reports upward steps only, with a 5 % default threshold: the boundary rule treats both
  directions alike);
- Otava 0.8: ``otava.analysis.compute_change_points`` with its defaults (window 50, p-value 0.001, no minimum
  magnitude).

A true change is found when an alarm in the right direction lies within 2 commits of it. Delay: the number of
commits after the change commit that had to be added before a detector run over the history so far reported it
(0: on the change commit itself); searched up to 8.
"""

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


def ours(s: Series, upto: int) -> Alarms:
    alarms: Alarms = []
    y, busy, machine = s.values[:upto], s.contended[:upto], s.machine[:upto]
    start = 0
    for end in [*np.flatnonzero(np.diff(machine)) + 1, upto]:  # one segment per machine
        keep = [i for i in range(start, int(end)) if not busy[i]]
        for c in detect.detect_measured(list(y[keep]), "lower"):
            if c.label != detect.SUSPICIOUS:
                alarms.append((keep[c.index], 1 if c.magnitude > 0 else -1))
        start = int(end)
    return alarms


def asv_steps(s: Series, upto: int) -> Alarms:
    from asv.step_detect import detect_steps

    steps = detect_steps(list(s.values[:upto]))
    out: Alarms = []
    for prev, cur in itertools.pairwise(steps):
        rel = cur[2] / prev[2] - 1
        if abs(rel) >= MIN_MAGNITUDE:
            out.append((cur[0], 1 if rel > 0 else -1))
    return out


def otava(s: Series, upto: int) -> Alarms:
    from otava.analysis import compute_change_points

    cps, _ = compute_change_points(list(s.values[:upto]))
    return [(cp.index, 1 if cp.stats.forward_rel_change() > 0 else -1) for cp in cps]


DETECTORS: dict[str, Callable[[Series, int], Alarms]] = {"lvm history": ours, "asv": asv_steps, "otava": otava}


# --- scoring ----------------------------------------------------------------------------------------------------------


@dataclass
class Score:
    series: int = 0
    commits: int = 0
    changes: int = 0
    hits: int = 0
    false_alarms: int = 0
    delays: list[int] = field(default_factory=list)  # of changes found by the delay search
    seconds: float = 0.0

    def row(self) -> dict[str, float | int | None]:
        alarms = self.hits + self.false_alarms
        within3 = sum(d <= 3 for d in self.delays)
        return {
            "series": self.series, "changes": self.changes,
            "precision": self.hits / alarms if alarms else None,
            "recall": self.hits / self.changes if self.changes else None,
            "false_per_1000_commits": 1000 * self.false_alarms / self.commits,
            "found_within_3": within3 / self.changes if self.changes else None,
            "median_delay": float(np.median(self.delays)) if self.delays else None,
            "seconds": round(self.seconds, 1),
        }


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
        sc.series += 1
        sc.commits += LENGTH
        sc.false_alarms += len(alarms) - len(hits)
        if s.change is not None:
            sc.changes += 1
            sc.hits += 1 if hits else 0
            sc.false_alarms += max(0, len(hits) - 1)  # one change found twice: the second is an extra alarm
            for delay in range(MAX_DELAY + 1):
                if any(_hit(a, s) for a in fn(s, s.change + 1 + delay)):
                    sc.delays.append(delay)
                    break
        sc.seconds += time.perf_counter() - t0
    return scores


def table(results: dict[str, dict[str, Score]]) -> str:
    classes = list(next(iter(results.values())))
    head = "| class | series | detector | precision | recall | false alarms / 1000 commits | found within 3 " \
           "commits | median delay | s |"
    lines = [head, "|" + "---|" * 9]

    def f(v: float | int | None, pct: bool = True) -> str:
        if v is None:
            return "-"
        return f"{v:.0%}" if pct else f"{v:.2f}"

    for cls in classes:
        for name, scores in results.items():
            r = scores[cls].row()
            lines.append(f"| {cls} | {r['series']} | {name} | {f(r['precision'])} | {f(r['recall'])} | "
                         f"{f(r['false_per_1000_commits'], False)} | {f(r['found_within_3'])} | "
                         f"{f(r['median_delay'], False)} | {r['seconds']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seed", type=int, default=20261203)
    p.add_argument("--scale", type=float, default=1.0, help="series per class x this (default 1.0: 590 series)")
    p.add_argument("--detectors", default=",".join(DETECTORS), help="comma-separated subset of " + ", ".join(DETECTORS))
    p.add_argument("--json", help="also write the rows as JSON here")
    args = p.parse_args(argv)
    series = bank(args.seed, args.scale)
    results = {}
    for name in args.detectors.split(","):
        t0 = time.perf_counter()
        results[name] = score(series, name)
        print(f"{name}: {time.perf_counter() - t0:.0f} s", file=sys.stderr)
    print(f"{len(series)} series of {LENGTH} commits, change at commit {CHANGE_AT}, seed {args.seed}\n")
    print(table(results))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump({n: {c: s.row() for c, s in r.items()} for n, r in results.items()}, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
