"""Contended records in the report's charts: drawn apart, never part of a line, fit, trend or Pareto front.

A record measured while other processes took the machine (a ``flag`` key such as ``contended`` is true) has times
that measure the contention, not the model: on a busy 2-core machine a smoke ResNet drew latency *falling* from
348 ms at batch 1 to 130 ms at batch 2 and a fit of "latency ∝ pixels^−0.29". The charts show such points hollow
and grey, leave them out of every line and fit, and say how many there are on the chart itself. Torch-free.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from lvmharness.store.records import is_contended

COLOR = "#9a9a9a"  # grey: apart from every series colour


def split(records: Iterable[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(clean, contended), each in the given order."""
    clean: list[dict[str, Any]] = []
    busy: list[dict[str, Any]] = []
    for r in records:
        (busy if is_contended(r) else clean).append(r)
    return clean, busy


def note(count: int) -> str:
    """The words on a chart with contended points."""
    return (f"{count} contended point{'s' if count != 1 else ''} (busy machine): hollow grey, "
            "left out of the lines and fits")
