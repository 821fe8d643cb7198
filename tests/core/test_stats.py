"""The pure-Python statistics against numpy (a second implementation) and against values worked by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from lvmharness.core.stats import loglog_slope, median, percentile

SAMPLES = [9.0, 1.0, 4.0, 16.0, 25.0, 2.0, 7.0]


@pytest.mark.parametrize("q", [0, 1, 10, 25, 33.3, 50, 51, 75, 90, 95, 99, 100])
def test_percentile_is_numpys_linear_method(q: float) -> None:
    assert percentile(SAMPLES, q) == pytest.approx(float(np.percentile(SAMPLES, q, method="linear")), rel=1e-12)


def test_percentile_by_hand() -> None:
    # Hyndman & Fan type 7: position (n - 1) q / 100 in the sorted data, linear between neighbours.
    # [1, 2, 3, 4] at q = 25: position 0.75 -> 1 + 0.75 * (2 - 1) = 1.75; at q = 90: 2.7 -> 3 + 0.7 = 3.7.
    assert percentile([4.0, 3.0, 2.0, 1.0], 25) == pytest.approx(1.75)
    assert percentile([4.0, 3.0, 2.0, 1.0], 90) == pytest.approx(3.7)
    assert percentile([5.0], 99) == 5.0
    assert percentile([3.0, 1.0], 0) == 1.0 and percentile([3.0, 1.0], 100) == 3.0


def test_median_of_odd_and_even_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([10.0, 1.0, 3.0, 2.0]) == 2.5  # the mean of the two middle values, 2 and 3
    assert median(SAMPLES) == 7.0


@pytest.mark.parametrize(
    ("samples", "q", "message"),
    [([], 50, "^percentile of no samples$"), ([1.0], -0.1, r"must be in \[0, 100\], got -0.1"),
     ([1.0], 100.1, r"must be in \[0, 100\], got 100.1"), ([1.0], math.nan, "got nan")],
)
def test_percentile_refuses_nonsense(samples: list[float], q: float, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        percentile(samples, q)


def test_percentile_does_not_reorder_its_input() -> None:
    data = [3.0, 1.0, 2.0]
    percentile(data, 50)
    assert data == [3.0, 1.0, 2.0]


@pytest.mark.parametrize(("k", "c"), [(2.0, 3.0), (-0.5, 10.0), (1.0, 1.0)])
def test_loglog_slope_recovers_a_power_law(k: float, c: float) -> None:
    xs = [1.0, 2.0, 4.0, 8.0, 16.0]
    assert loglog_slope((x, c * x**k) for x in xs) == pytest.approx(k, abs=1e-12)


def test_loglog_slope_is_least_squares() -> None:
    pts = [(1.0, 1.0), (2.0, 4.0), (4.0, 8.0), (8.0, 30.0)]
    expected = np.polyfit(np.log([p[0] for p in pts]), np.log([p[1] for p in pts]), 1)[0]
    assert loglog_slope(pts) == pytest.approx(float(expected), rel=1e-12)


def test_loglog_slope_skips_non_positive_points_and_needs_two_sizes() -> None:
    # (0, 5), (3, -1) and (5, 0) have no logarithm: the fit uses (1, 2) and (2, 8) only, slope log(4)/log(2) = 2.
    assert loglog_slope([(0.0, 5.0), (1.0, 2.0), (3.0, -1.0), (5.0, 0.0), (2.0, 8.0)]) == pytest.approx(2.0)
    assert loglog_slope([(2.0, 1.0), (2.0, 3.0)]) is None
    assert loglog_slope([(2.0, 1.0)]) is None
    assert loglog_slope([]) is None
