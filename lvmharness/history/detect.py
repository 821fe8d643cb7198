"""Change points in one segment of a series: PELT candidates confirmed by a two-sample test and a minimum magnitude.

The method, with its parameters (``Params``; every default is stated there):

1. Work on ``log(value)`` of the uncontended points, so a step is a relative change whatever the unit.
2. Noise scale ``sigma``: the largest of (a) Rousseeuw & Croux's Qn of first differences / sqrt(2) (JASA 1993;
   difference-based, so a step or an isolated outlier is one or two large differences, which a 50 %-breakdown scale
   ignores; Fryzlewicz 2014 "Wild binary segmentation" sec. 3 for difference-based scales in change-point detection;
   Qn rather than the MAD for its efficiency, 82 % against 37 %: over 30-60 points the MAD now and then claims half
   the real noise, and every z then doubles), raised for a segment shorter than 60 points by ``short_series_factor``
   (a new machine's first 10 points can claim a third of their noise), (b) the standard error of one commit's median
   from its raw samples where the series has them (sqrt(pi/2) x 1.4826 x MAD / sqrt(n), the asymptotic variance of
   the median, e.g. Serfling 1980 sec. 2.3), so a short history cannot claim less noise than one run shows, and (c)
   ``noise_floor``.
3. Candidates: PELT (Killick, Fearnhead & Eckley 2012, JASA 107(500):1590-1598) over ``log(value) / sigma`` with
   the L2 cost (a change in mean), ``min_size`` 2, penalty ``penalty_per_log_n`` x ln(n) (in sigma^2: a BIC-like
   penalty, loose on purpose: the test of step 4 decides); the ``ruptures`` library's implementation (Truong,
   Oudre & Vayatis 2020, Signal Processing 167:107299). An outlier may draw candidates around itself; step 4
   removes them (a two-point "segment" is a blip, and each side is winsorized).
4. Confirmation, as Hunter/Apache Otava do after E-divisive (Fleming et al., ICPE 2023): each candidate is tested
   on the points between its neighbouring candidates (at most ``window`` a side), each side winsorized at its
   median +- 3 sigma; z = (mean after - mean before) / (sigma x sqrt(1/n_before + 1/n_after)) must reach
   ``z_threshold`` (``z_suspicious`` for the last change when it is among the newest ``recent`` points), the
   relative change of the medians ``min_magnitude``, each side must hold at least
   ``min_after`` points (fewer between two changes, or at the start, is a blip), and the level must have moved
   past the midpoint of the two medians (``_level_shift``: every point of a short new segment, or all but one
   when it has more than ``min_after``; most of the first ``min_after`` of a longer one, or else every point of
   its later half, as a drift's are): scattered outliers ("outlier, normal, outlier") move a three-point median
   but not every point. The weakest failing candidate is dropped and the rest re-tested with wider windows until
   all pass.
5. Placement: each kept change may move up to ``refine`` points to the split of least absolute deviation from
   the two sides' medians (the L1 change-point estimate) when that split passes step 4 too.
   PELT's segments hold two points or more, so the newest point alone is tested as a last candidate too.
6. Drifts: consecutive changes in one direction become one change of kind ``drift`` (at the first) when one
   straight line fits the points from the first change to the next change or the end better than two levels
   plus PELT's penalty for the extra change point; its magnitude is from the level before to the last level.
7. Labels: ``regression`` / ``improvement`` by the value's direction when at least ``min_after`` points follow
   the change and it passed ``z_threshold``; ``suspicious`` when it is at the end of the series with fewer points
   after it, or among the newest ``recent`` points with a z between ``z_suspicious`` and ``z_threshold``: an early,
   provisional report that more commits confirm or drop (a change in the middle with fewer points before the next
   change is a blip, not a change, and is dropped).

Deterministic values (counted: params, MACs, graph structure) skip all of this: any change is a change point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from lvmharness.core.errors import BadValueError

SUSPICIOUS = "suspicious"
REGRESSION = "regression"
IMPROVEMENT = "improvement"
STEP = "step"
DRIFT = "drift"


@dataclass(frozen=True)
class Params:
    cost: str = "l2"  # the PELT segment cost (ruptures model name) over log(value)/sigma
    penalty_per_log_n: float = 3.0  # PELT penalty = this x ln(n), in the cost's units (sigma^2 for l2)
    z_threshold: float = 5.0  # confirmation: |z| of the winsorized mean shift, in standard errors (at 4.5
    # the bank's 400 unchanged series, 24,000 commits, seed 1, gave no alarm with the Qn scale; 5.0 keeps a margin)
    z_suspicious: float = 4.0  # ... for a change among the newest ``recent`` points, labelled suspicious while
    # it is below z_threshold or has fewer than min_after points after it: an early, provisional report
    recent: int = 6
    min_magnitude: float = 0.01  # confirmation: |relative change of the medians| (1 %)
    min_after: int = 3  # points after a change before it is labelled regression/improvement, not suspicious
    window: int = 30  # points a side used by the confirmation test
    refine: int = 2  # a kept change may move this many points to a better (L1) split (step 5)
    noise_floor: float = 0.001  # sigma never below 0.1 % (a clock's resolution, a perfectly quiet machine)
    min_points: int = 5  # fewer uncontended points in a segment: nothing is detected (short_series_factor is
    # infinite below 5: four points cannot tell their noise)

    def __post_init__(self) -> None:
        for name in ("penalty_per_log_n", "z_threshold", "z_suspicious", "min_magnitude", "noise_floor"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value >= 0):
                raise BadValueError(f"{name} must be a finite number >= 0, got {value!r}")
        if self.min_after < 1 or self.window < 2 or self.min_points < 3 or self.refine < 0 or self.recent < 0:
            raise BadValueError("min_after must be >= 1, window >= 2, min_points >= 3, refine >= 0, recent >= 0")
        if self.z_suspicious > self.z_threshold:
            raise BadValueError(f"z_suspicious ({self.z_suspicious}) must be <= z_threshold ({self.z_threshold})")


@dataclass(frozen=True)
class Change:
    index: int  # index (into the values given) of the first point at the new level
    label: str  # regression | improvement | suspicious
    magnitude: float  # relative change of the medians, (after - before) / before
    z: float  # the confirmation statistic (inf for a deterministic value)
    before: float  # median before (the value's unit)
    after: float  # median after
    points_after: int
    kind: str = "step"  # step | drift (consecutive changes one way that a straight line fits better: step 6)


def _mad(x: np.ndarray) -> float:
    return float(np.median(np.abs(x - np.median(x)))) if x.size else 0.0


def qn_scale(x: np.ndarray) -> float:
    """Rousseeuw & Croux's Qn (JASA 88(424):1273-1283, 1993): 2.2219 x the k-th smallest of the |x_i - x_j|, i < j,
    k = C(h, 2), h = n // 2 + 1, times their small-sample factor n / (n + 1.4) (n odd) or n / (n + 3.8) (n even)
    for n > 9. A consistent estimate of a normal sigma, 50 % breakdown like the MAD, but 82 % efficient where the
    MAD is 37 %: over 30-60 points the MAD's spread lets one series in a few dozen claim half its real noise."""
    n = x.size
    if n < 2:
        return 0.0
    h = n // 2 + 1
    k = h * (h - 1) // 2
    pairs = np.abs(x[:, None] - x[None, :])[np.triu_indices(n, 1)]
    q = 2.2219 * float(np.partition(pairs, k - 1)[k - 1])
    if n > 9:
        q *= n / (n + 1.4) if n % 2 else n / (n + 3.8)
    return q


SIGMA_REFERENCE_N = 60  # the series length the thresholds were set on (the bank's series)


def short_series_factor(n: int) -> float:
    """How much to raise the Qn-of-differences sigma of ``n`` points so that it claims too little noise no more
    often than at ``SIGMA_REFERENCE_N`` points. Under Gaussian noise the estimate's 1st percentile, as a fraction of
    the true sigma (4,000 simulated series each), is 0.13 at 6 points, 0.40 at 10, 0.55 at 20, 0.63 at 30 and 0.75
    at 60 — close to 1 - 2.03 / sqrt(n) (2.33, the normal 1 % quantile, x 0.87 / sqrt(n), the estimate's relative
    standard error). Unraised, a new machine's first 10-20 points now and then claim a third of their noise and
    every z triples; raised, the short segment is held to the false-alarm rate the thresholds give at the
    reference length. Longer series keep factor 1."""
    def q(k: int) -> float:
        return 1 - 2.03 / math.sqrt(k)
    if n >= SIGMA_REFERENCE_N:
        return 1.0
    return q(SIGMA_REFERENCE_N) / q(n) if q(n) > 0.05 else math.inf


def noise_sigma(logy: np.ndarray, samples: Sequence[Sequence[float] | None] | None, params: Params) -> float:
    """The noise scale of ``log(value)`` (see the module docstring, step 2)."""
    factor = short_series_factor(logy.size)
    if not math.isfinite(factor):
        return math.inf
    diffs = np.diff(logy)
    between = factor * qn_scale(diffs) / math.sqrt(2) if diffs.size >= 2 else 0.0
    within = 0.0
    if samples:
        ses = []
        for s in samples:
            arr = np.asarray([v for v in (s or []) if v is not None and v > 0], dtype=float)
            if arr.size >= 3:
                ses.append(math.sqrt(math.pi / 2) * 1.4826 * _mad(np.log(arr)) / math.sqrt(arr.size))
        within = float(np.median(ses)) if ses else 0.0
    return max(between, within, params.noise_floor)


def _winsorized_mean(x: np.ndarray, sigma: float) -> float:
    med = float(np.median(x))
    return float(np.mean(np.clip(x, med - 3 * sigma, med + 3 * sigma)))


def _test(logy: np.ndarray, cp: int, lo: int, hi: int, sigma: float, params: Params) -> tuple[float, float]:
    """(z, relative change of the medians) of a change at ``cp`` tested on logy[lo:hi]."""
    before = logy[max(lo, cp - params.window):cp]
    after = logy[cp:min(hi, cp + params.window)]
    if before.size < 2 or after.size < 1:
        return 0.0, 0.0
    d = _winsorized_mean(after, sigma) - _winsorized_mean(before, sigma)
    z = d / (sigma * math.sqrt(1 / before.size + 1 / after.size))
    mag = math.exp(float(np.median(after)) - float(np.median(before))) - 1
    return z, mag


def _z_needed(cp: int, hi: int, n: int, params: Params) -> float:
    """The last change of a series, among its newest ``recent`` points, passes at ``z_suspicious`` (and is
    labelled suspicious below ``z_threshold``); every other change needs ``z_threshold``."""
    return params.z_suspicious if hi == n and n - cp < params.recent else params.z_threshold


def _level_shift(logy: np.ndarray, cp: int, lo: int, hi: int, params: Params) -> bool:
    """The level moved. A short new segment (fewer than 2 x ``min_after`` points before the next change or the
    end): every point lies past the midpoint of the two medians, or all but one when it has more than
    ``min_after`` (one point 2 sigma back in a 4-sigma step is common; two outliers with a normal point between
    them move the median of a three-point segment, but not every one of its points). A longer one: most of its
    first ``min_after`` points."""
    before = float(np.median(logy[max(lo, cp - params.window):cp]))
    mid = (before + float(np.median(logy[cp:min(hi, cp + params.window)]))) / 2
    short = hi - cp < 2 * params.min_after
    first = logy[cp:hi] if short else logy[cp:cp + params.min_after]
    past = int(np.sum(first > mid)) if mid > before else int(np.sum(first < mid))
    if short:
        return past >= (first.size if first.size <= params.min_after else first.size - 1)
    if 2 * past > first.size:
        return True
    # a drift: the level moves gradually, so its first points may still lie short of the midpoint; the later half
    # of the new segment must then be past it (most points), as a ramp's is and scattered outliers' is not
    late = logy[cp:min(hi, cp + params.window)]
    late = late[late.size // 2:]
    past_late = int(np.sum(late > mid)) if mid > before else int(np.sum(late < mid))
    return past_late == late.size


def _pelt(z: np.ndarray, params: Params) -> list[int]:
    import ruptures as rpt

    if z.size < 4:
        return []
    pen = params.penalty_per_log_n * math.log(z.size)
    bkps = rpt.Pelt(model=params.cost, min_size=2, jump=1).fit(z.reshape(-1, 1)).predict(pen=pen)
    return [int(b) for b in bkps[:-1]]  # ruptures ends the list with n


def _label(mag: float, z: float, better: str | None, points_after: int, params: Params) -> str:
    if points_after < params.min_after or (points_after < params.recent and abs(z) < params.z_threshold):
        return SUSPICIOUS
    if better is None:
        return REGRESSION if mag != 0 else SUSPICIOUS
    worse = mag > 0 if better == "lower" else mag < 0
    return REGRESSION if worse else IMPROVEMENT


def _bounds(cps: list[int], i: int, n: int) -> tuple[int, int]:
    return (cps[i - 1] if i else 0), (cps[i + 1] if i + 1 < len(cps) else n)


def _prune(logy: np.ndarray, cps: list[int], sigma: float, params: Params) -> list[int]:
    """Step 4: drop the weakest failing candidate until every one left passes."""
    n = logy.size
    cps = list(cps)
    while cps:
        results = []
        for i, cp in enumerate(cps):
            lo, hi = _bounds(cps, i, n)
            z, mag = _test(logy, cp, lo, hi, sigma, params)
            blip = (hi < n and hi - cp < params.min_after) or cp - lo < params.min_after
            ok = abs(z) >= _z_needed(cp, hi, n, params) and abs(mag) >= params.min_magnitude and not blip \
                and _level_shift(logy, cp, lo, hi, params)
            results.append((ok, abs(z)))
        failing = [i for i, r in enumerate(results) if not r[0]]
        if not failing:
            break
        cps.pop(min(failing, key=lambda i: results[i][1]))
    return cps


def _l1_cost(logy: np.ndarray, s: int, lo: int, hi: int) -> float:
    left, right = logy[lo:s], logy[s:hi]
    return float(np.sum(np.abs(left - np.median(left))) + np.sum(np.abs(right - np.median(right))))


def _refine(logy: np.ndarray, cps: list[int], sigma: float, params: Params) -> list[int]:
    """Step 5: each kept change moves to the split of least absolute deviation from the two sides' medians (the
    L1 change-point estimate, robust to an outlier where the L2 one is not) within ``refine`` points of it, when
    that split passes the test too: PELT placed the candidates among others since dropped."""
    n = logy.size
    out = list(cps)
    for i, cp in enumerate(out):
        lo, hi = _bounds(out, i, n)
        a, b = max(lo, cp - params.window), min(hi, cp + params.window)
        best, best_cost = cp, _l1_cost(logy, cp, a, b)
        for s in range(max(lo + params.min_after, cp - params.refine), min(hi - 1, cp + params.refine) + 1):
            cost = _l1_cost(logy, s, a, b)
            z, mag = _test(logy, s, lo, hi, sigma, params)
            if cost < best_cost and abs(z) >= _z_needed(s, hi, n, params) and abs(mag) >= params.min_magnitude \
                    and _level_shift(logy, s, lo, hi, params):
                best, best_cost = s, cost
        out[i] = best
    return out


def _tail(logy: np.ndarray, cps: list[int], sigma: float, params: Params) -> list[int]:
    """Step 5b: PELT's segments hold at least two points, so a change on the newest commit alone is never a
    candidate. Test it: the newest point as a one-point new segment, against the points since the last change,
    with step 4's test (its z, magnitude and level shift). It can only ever be labelled suspicious."""
    n = logy.size
    cp = n - 1
    lo = cps[-1] if cps else 0
    if cp - lo < max(params.min_after, params.min_points - 1):
        return cps  # a change among the last points already, or too few points before it to judge
    z, mag = _test(logy, cp, lo, n, sigma, params)
    if abs(z) >= _z_needed(cp, n, n, params) and abs(mag) >= params.min_magnitude \
            and _level_shift(logy, cp, lo, n, params):
        return [*cps, cp]
    return cps


def _ramp_fits_better(logy: np.ndarray, a: int, b: int, hi: int, sigma: float, params: Params) -> bool:
    """Two changes in one direction at ``a`` and ``b``: is logy[a:hi] better fit by one straight line than by two
    levels split at ``b``? Both fits have two free parameters, but the split was searched for, so the two levels
    pay PELT's penalty for one change point (``penalty_per_log_n`` x ln n, in sigma^2) on top of their residual sum
    of squares: a drift cut into stairs by PELT fits the line, stairs with steps of more than about 4 sigma the
    two levels (a step of h leaves h^2 / 16 a point around the best line through it)."""
    seg = logy[a:hi]
    t = np.arange(seg.size, dtype=float)
    slope, icept = np.polyfit(t, seg, 1)
    rss_line = float(np.sum((seg - (icept + slope * t)) ** 2))
    k = b - a
    rss_steps = float(np.sum((seg[:k] - seg[:k].mean()) ** 2) + np.sum((seg[k:] - seg[k:].mean()) ** 2))
    return rss_line <= rss_steps + params.penalty_per_log_n * math.log(logy.size) * sigma ** 2


def _merge_drifts(logy: np.ndarray, cps: list[int], sigma: float, params: Params) -> list[tuple[int, int]]:
    """Step 6: consecutive changes in one direction that a straight line fits better become one drift; returns
    (first change, last change) per change kept (equal for a step)."""
    n = logy.size
    groups: list[list[int]] = []
    for i, cp in enumerate(cps):
        if groups:
            a, b = groups[-1][0], groups[-1][-1]
            lo_a = _bounds(cps, cps.index(a), n)[0]
            before = float(np.median(logy[lo_a:a]))
            mid = float(np.median(logy[b:cp]))
            after = float(np.median(logy[cp:_bounds(cps, i, n)[1]]))
            same = (mid - before) * (after - mid) > 0
            if same and _ramp_fits_better(logy, a, cp, _bounds(cps, i, n)[1], sigma, params):
                groups[-1].append(cp)
                continue
        groups.append([cp])
    return [(g[0], g[-1]) for g in groups]


def detect_measured(values: Sequence[float], better: str | None, params: Params | None = None,
                    samples: Sequence[Sequence[float] | None] | None = None) -> list[Change]:
    """Change points of one segment of measured values (uncontended, in commit order, all > 0)."""
    params = params or Params()
    y = np.asarray(values, dtype=float)
    if y.size < params.min_points or not np.all(np.isfinite(y)) or np.any(y <= 0):
        return []
    logy = np.log(y)
    sigma = noise_sigma(logy, samples, params)
    if not math.isfinite(sigma):
        return []
    cps = _refine(logy, _prune(logy, _pelt(logy / sigma, params), sigma, params), sigma, params)
    cps = _tail(logy, cps, sigma, params)
    n = y.size
    out = []
    groups = _merge_drifts(logy, cps, sigma, params)
    starts = [g[0] for g in groups]
    for i, (cp, last) in enumerate(groups):
        lo, hi = _bounds(starts, i, n)
        z, _ = _test(logy, cp, lo, hi, sigma, params)
        before = float(np.exp(np.median(logy[max(lo, cp - params.window):cp])))
        after = float(np.exp(np.median(logy[last:min(hi, last + params.window)])))
        mag = after / before - 1
        out.append(Change(cp, _label(mag, z, better, n - cp, params), mag, z, before, after, n - cp,
                          DRIFT if last != cp else STEP))
    return out


def detect_exact(values: Sequence[float | int], better: str | None) -> list[Change]:
    """Deterministic values: every change of value is a change point (counted, so no noise to test against)."""
    out = []
    for i in range(1, len(values)):
        a, b = values[i - 1], values[i]
        if a == b:
            continue
        mag = (b - a) / abs(a) if a else math.inf
        label = REGRESSION if better is None or (b > a) == (better == "lower") else IMPROVEMENT
        out.append(Change(i, label, mag, math.inf, float(a), float(b), len(values) - i))
    return out
