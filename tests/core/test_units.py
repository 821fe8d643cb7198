"""Byte display: binary units (IEC 80000-13), expected strings written out by hand."""

from __future__ import annotations

import pytest

from lvmharness.core.units import fmt_bytes, to_mib


@pytest.mark.parametrize(("n", "text"), [
    (0, "0 B"),
    (1023, "1023 B"),
    (1024, "1.00 KiB"),
    (1536, "1.50 KiB"),  # 1.5 x 1024
    (5 * 1024 * 1024, "5.00 MiB"),
    (3 * 1024**3 + 512 * 1024**2, "3.50 GiB"),  # 3 GiB + half a GiB
    (-2048, "-2.00 KiB"),  # a negative delta keeps its unit
])
def test_fmt_bytes(n: int, text: str) -> None:
    assert fmt_bytes(n) == text


def test_to_mib() -> None:
    assert to_mib(1_048_576) == 1.0
    assert to_mib(3_145_728) == 3.0
