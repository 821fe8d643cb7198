"""The one largest-batch search: doubling then bisection, probe by probe (the expected orders worked out by hand)."""

from __future__ import annotations

from collections.abc import Callable

from lvmharness.measure.batch_search import largest_fitting


def _probing(limit: int) -> tuple[list[int], Callable[[int], bool]]:
    asked: list[int] = []

    def fits(b: int) -> bool:
        asked.append(b)
        return b <= limit

    return asked, fits


def test_doubling_then_bisection_finds_the_boundary() -> None:
    asked, fits = _probing(37)
    assert largest_fitting(fits, lo=1, upper=4096) == (37, 38)
    # Doubling 2..64 (64 is the first that does not fit), then halving the gap 32..64: 48, 40, 36, 38, 37.
    assert asked == [2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37]


def test_the_last_doubling_is_clipped_to_the_bound_and_a_fitting_bound_is_said() -> None:
    asked, fits = _probing(10**9)
    assert largest_fitting(fits, lo=1, upper=100) == (100, None)
    assert asked == [2, 4, 8, 16, 32, 64, 100]
    asked, fits = _probing(10**9)
    assert largest_fitting(fits, lo=100, upper=100) == (100, None) and asked == []


def test_a_known_misfit_skips_the_doubling() -> None:
    asked, fits = _probing(3)
    assert largest_fitting(fits, lo=1, upper=4096, hi=5) == (3, 4)
    assert asked == [3, 4]
