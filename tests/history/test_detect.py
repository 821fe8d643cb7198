"""The detector's parts with results derived by hand: the Qn scale, the short-segment level shift, drifts against
stairs, and the parameters' range check."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import numpy as np
import pytest

from lvmharness.core.errors import BadValueError
from lvmharness.history import detect


def test_qn_scale_of_zero_to_nine() -> None:
    """n = 10: h = 6, k = C(6, 2) = 15; the |i - j| of 0..9 are 1 nine times, 2 eight times, so the 15th smallest
    is 2, and Qn = 2.2219 x 2 x 10 / (10 + 3.8) = 3.2202."""
    assert detect.qn_scale(np.arange(10, dtype=float)) == pytest.approx(2.2219 * 2 * 10 / 13.8)


def test_qn_scale_ignores_a_few_outliers() -> None:
    """Three wild values (1,000-1,003) beside 0..9: h = 7, k = 21; the pairwise distances below 4 are 10 ones, 9
    twos and 8 threes (the wild values' own 1, 2 and 3 included), so the 21st smallest is 3, whatever the wild
    values' distance to the rest, and Qn = 2.2219 x 3 x 13 / (13 + 1.4) = 6.0176."""
    x = np.array([*range(10), 1000.0, 1001.0, 1003.0])
    assert detect.qn_scale(x) == pytest.approx(2.2219 * 3 * 13 / 14.4)


def _base(seed: int, n: int = 30, cv: float = 0.01) -> list[float]:
    rng = random.Random(seed)
    return [100 * math.exp(rng.gauss(0, cv)) for _ in range(n)]


def test_four_points_after_with_one_back_are_a_level_shift() -> None:
    """120, 121, 101, 119 after a level of 100 (1 % noise): the midpoint of the medians (100 and 119.5) is about
    110, three of the four points lie past it, which a four-point segment allows (all but one); z is far above
    5 (a 19 % step is about 19 sigma)."""
    found = detect.detect_measured([*_base(3), 120.0, 121.0, 101.0, 119.0], "lower")
    assert [(c.index, c.label, c.kind) for c in found] == [(30, "regression", "step")]
    two_back = detect.detect_measured([*_base(3), 120.0, 101.0, 100.5, 119.0], "lower")
    assert [c for c in two_back if c.label != detect.SUSPICIOUS] == []


def test_a_ramp_is_one_drift_change() -> None:
    """40 points at 100 (0.5 % noise), then +1 % a commit for 20 commits (2 sigma a commit): PELT cuts the ramp
    into stairs; one straight line fits them better, so one change of kind drift is reported, at the ramp's
    start (within the 2 commits a first step needs to clear the midpoint), rising about 20 % in all."""
    ys = _base(5, 40, 0.005) + [v * 1.01 ** (k + 1) for k, v in enumerate(_base(6, 20, 0.005))]
    found = detect.detect_measured(ys, "lower")
    assert len(found) == 1
    c = found[0]
    assert (c.kind, c.label) == ("drift", "regression")
    assert 40 <= c.index <= 43
    assert 0.10 < c.magnitude < 0.25


def test_stairs_stay_two_steps() -> None:
    """Two +10 % steps 10 commits apart at 1 % noise (10 sigma each): around the best line, a 10-sigma step
    leaves 10^2 / 16 sigma^2 a point, 125 over the 20 points, far above PELT's penalty of 3 ln 40 = 11 sigma^2."""
    ys = _base(7, 20) + [1.1 * v for v in _base(8, 10)] + [1.21 * v for v in _base(9, 10)]
    found = detect.detect_measured(ys, "lower")
    assert [(c.index, c.label, c.kind) for c in found] == [(20, "regression", "step"), (30, "regression", "step")]


def test_params_range_check() -> None:
    with pytest.raises(BadValueError):
        detect.Params(refine=-1)
    with pytest.raises(BadValueError):
        detect.Params(z_threshold=math.nan)
    with pytest.raises(BadValueError, match="z_suspicious"):
        detect.Params(z_threshold=4.0, z_suspicious=4.5)


def _diff_sigma_ratio_percentile(n: int, q: float, sims: int = 3000) -> float:
    """The q-quantile of the unraised Qn-of-differences sigma / the true sigma over Gaussian series of n points."""
    rng = np.random.default_rng(n)
    r = [detect.qn_scale(np.diff(rng.normal(0, 1, n))) / math.sqrt(2) for _ in range(sims)]
    return float(np.quantile(r, q))


@pytest.mark.parametrize("n", [10, 20, 40])
def test_short_series_factor_matches_the_simulated_first_percentile(n: int) -> None:
    """The factor is q(60) / q(n) with q(n) = 1 - 2.03 / sqrt(n), the normal 1 % quantile 2.33 x a relative
    standard error of 0.87 / sqrt(n). Simulated here independently: the 1st percentile of the unraised estimate
    at n points, divided into the one at 60, gives the same factor within 10 %."""
    simulated = _diff_sigma_ratio_percentile(60, 0.01) / _diff_sigma_ratio_percentile(n, 0.01)
    assert detect.short_series_factor(n) == pytest.approx(simulated, rel=0.10)
    assert detect.short_series_factor(60) == detect.short_series_factor(600) == 1.0
    assert detect.short_series_factor(4) == math.inf  # four points cannot tell their noise


def test_a_new_machine_short_segment_raises_no_false_change() -> None:
    """2,000 unchanged segments of 8-20 points at 1 % CV, as a new machine's first commits are: none gets a
    labelled change. Without the raise the Qn of 7-19 differences claims under half the noise in about 5 % of
    them (the simulated 5th percentile is 0.40-0.55), a 1 % wobble then looks like 5 sigma, and 10 of these
    segments get a regression or improvement (measured with the factor set to 1)."""
    rng = random.Random(21)
    labelled = []
    for i in range(2000):
        ys = [100 * math.exp(rng.gauss(0, 0.01)) for _ in range(8 + i % 13)]
        labelled += [c for c in detect.detect_measured(ys, "lower") if c.label != detect.SUSPICIOUS]
    assert labelled == []


def test_a_jump_on_the_newest_commit_alone_is_suspicious_at_once() -> None:
    """PELT's segments hold two points at least; the newest point is tested alone: 20 % up after 30 points at
    1 % noise is 18 sigma, reported on that commit as suspicious (one point cannot confirm a level)."""
    found = detect.detect_measured([*_base(12), 120.0], "lower")
    assert [(c.index, c.label, c.points_after) for c in found] == [(30, "suspicious", 1)]
    assert detect.detect_measured(_base(12), "lower") == []


def test_a_weak_change_among_the_newest_points_is_suspicious_not_labelled() -> None:
    """Changes among the newest 6 points pass at z_suspicious (4.0) and are labelled only from z_threshold (5.0)
    with 3 points after them. Over seeded 2-sigma steps with 4 points after (expected z about 2 / sqrt(1/30 +
    1/4) = 3.8), every change reported has |z| >= 4, and is suspicious exactly when |z| < 5."""
    seen = set()
    for seed in range(60):
        ys = _base(100 + seed, 30, 0.02) + [1.04 * v for v in _base(200 + seed, 4, 0.02)]
        for c in detect.detect_measured(ys, "lower"):
            assert abs(c.z) >= 4.0
            assert (c.label == detect.SUSPICIOUS) == (abs(c.z) < 5.0)
            seen.add(c.label)
    assert seen == {detect.SUSPICIOUS, detect.REGRESSION}  # both kinds occur, so both sides were checked


def test_lvm_history_detect_says_a_drift_is_a_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The ramp of ``test_a_ramp_is_one_drift_change`` through ``lvm history detect --csv``: one alert, a
    regression of kind drift, in the JSON and in the text."""
    from lvmharness.commands.main import main

    ys = _base(5, 40, 0.005) + [v * 1.01 ** (k + 1) for k, v in enumerate(_base(6, 20, 0.005))]
    csv = tmp_path / "ramp.csv"
    csv.write_text("series,commit,value\n" + "".join(f"ramp|latency_ms_p50|fp,c{i:03d},{y!r}\n"
                                                    for i, y in enumerate(ys)))
    assert main(["history", "detect", "--csv", str(csv), "--json", "--no-fail"]) == 0
    (alert,) = json.loads(capsys.readouterr().out)["alerts"]
    assert (alert["kind"], alert["label"]) == ("drift", "regression") and 40 <= int(alert["commit"][1:]) <= 43
    assert main(["history", "detect", "--csv", str(csv), "--no-fail"]) == 0
    assert "(a drift: it starts here)" in capsys.readouterr().out
