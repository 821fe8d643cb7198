"""tools/history_bank.py's scoring and its paired comparison, on outcomes written by hand (the comparators, asv and
Otava, live in a venv of their own and are not needed for this)."""

from __future__ import annotations

from types import ModuleType

import numpy as np
import pytest

from tests.helpers.tools import load_tool


@pytest.fixture(scope="module")
def bank() -> ModuleType:
    return load_tool("history_bank")


def _score(bank: ModuleType, hits: list[bool], false: list[int], delays: list[int | None]):  # type: ignore[no-untyped-def]
    return bank.Score(changes=[True] * len(hits), hits=hits, false=false, delays=delays,
                      runs_alarmed=[0] * len(hits))


def test_measures_by_hand(bank: ModuleType) -> None:
    """4 series with a change: 3 found (delays 0, 2, 5), 1 false alarm in all: precision 3/4, recall 3/4, 1 false
    alarm in 4 x 60 commits = 4.17 per 1,000, found within 3 commits 2/4."""
    m = _score(bank, [True, True, True, False], [0, 1, 0, 0], [0, 2, 5, None]).measures()
    assert m["precision"] == pytest.approx(0.75)
    assert m["recall"] == pytest.approx(0.75)
    assert m["false_per_1000_commits"] == pytest.approx(1000 / 240)
    assert m["found_within_3"] == pytest.approx(0.5)


def test_paired_bootstrap_says_worse_only_when_the_interval_excludes_zero(bank: ModuleType) -> None:
    """100 series: A finds 90, B finds 50 (B's 50 among A's 90): the paired recall difference is 0.4 with a standard
    error of sqrt(0.4 x 0.6 / 100) = 0.05, far from 0, so A is better and B worse. A against itself: a tie (every
    resampled difference is 0, so the measure is left out)."""
    a = _score(bank, [i < 90 for i in range(100)], [0] * 100, [0 if i < 90 else None for i in range(100)])
    b = _score(bank, [i < 50 for i in range(100)], [0] * 100, [0 if i < 50 else None for i in range(100)])
    assert bank.compare(a, b, seed=0)["recall"] == "better"
    assert bank.compare(b, a, seed=0)["recall"] == "worse"
    assert "recall" not in bank.compare(a, a, seed=0)
    # 51 against 50 of 100: a difference of 0.01 is inside the noise
    c = _score(bank, [i < 51 for i in range(100)], [0] * 100, [0 if i < 51 else None for i in range(100)])
    assert bank.compare(c, b, seed=0)["recall"] == "tie"


def test_the_bank_scores_lvm_history_on_a_small_seeded_bank(bank: ModuleType) -> None:
    """The real path for lvm history (score, runs replayed on unchanged series), on 2 series a class: every 20 %
    step found, and unchanged series raise no alarm in any replayed run."""
    series = [s for s in bank.bank(seed=3, scale=0.04) if s.cls in ("null-cv1", "step20")]
    scores = bank.score(series, bank.OURS)
    assert scores["step20"].measures()["recall"] == 1.0
    assert scores["null-cv1"].measures()["false_per_1000_runs"] == 0.0
    assert np.sum(scores["null-cv1"].false) == 0
