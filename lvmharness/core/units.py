"""Byte sizes for people, in binary units (IEC 80000-13: 1 KiB = 2**10 B, 1 MiB = 2**20 B, 1 GiB = 2**30 B).

The one home of the conversion: the CLI's memory lines, the report's MiB axes and tables, and the architecture
page (viz/static, the same rule in JavaScript) all show bytes this way. Standard library only.
"""

from __future__ import annotations

KIB = 2**10
MIB = 2**20
GIB = 2**30


def to_mib(n: float) -> float:
    """Bytes -> MiB (a float, for axes and tables)."""
    return n / MIB


def fmt_bytes(n: float) -> str:
    """Bytes for people: the largest binary unit the size reaches, two decimals; below 1 KiB whole bytes."""
    for unit, div in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if abs(n) >= div:
            return f"{n / div:.2f} {unit}"
    return f"{int(n)} B"
