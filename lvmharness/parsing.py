"""Parsers of values users type: comma lists, positive integers, finite numbers, memory sizes.

Torch-free. Each raises ValueError with what was wrong and what is valid, without naming an option: the front end
(the pytest plugin's and the CLI's argparse ``type=`` functions) prefixes the option the user typed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

_BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']; an empty list is an error (an empty option is a mistake, not 'all')."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise ValueError(f"{text!r} names nothing: expected a comma list such as 'a,b'")
    return items


def parse_positive_int(text: str) -> int:
    try:
        value = int(text.strip())
    except ValueError:
        raise ValueError(f"{text.strip()!r} is not an integer") from None
    if value < 1:
        raise ValueError(f"{value} must be a positive integer")
    return value


def parse_int_in(text: str, low: int, high: int | None = None) -> int:
    """An integer in [low, high] (``high`` None: no upper bound); the error says what is valid."""
    try:
        value = int(text)
    except ValueError:
        raise ValueError(f"expected an integer, got {text!r}") from None
    if value < low or (high is not None and value > high):
        valid = f"between {low} and {high:,}" if high is not None else f">= {low}"
        raise ValueError(f"must be an integer {valid}, got {text}")
    return value


def parse_int_list(text: str) -> list[int]:
    """'1, 8,32' -> [1, 8, 32]; every item a positive integer."""
    out = []
    for item in parse_list(text):
        try:
            out.append(parse_positive_int(item))
        except ValueError as exc:
            raise ValueError(f"{exc} (expected a comma list of positive integers, e.g. '1,8,32')") from None
    return out


def parse_seconds(text: str) -> float:
    """A finite, non-negative number of seconds ('nan', 'inf' and negative values are errors)."""
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0:
        raise ValueError(f"{text!r} must be a finite number of seconds >= 0, e.g. 2.5")
    return value


def parse_bytes(text: str) -> int:
    """'2GiB', '512MiB', '1.5GB', '1000000' -> bytes."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([a-zA-Z]*)\s*", text)
    unit = m.group(2).lower() if m else ""
    if not m or (unit and unit not in _BYTE_UNITS):
        raise ValueError(f"memory size {text!r} not understood: use e.g. 2GiB, 512MiB, 1.5GB or a byte count")
    value = int(float(m.group(1)) * _BYTE_UNITS[unit or "b"])
    if value <= 0:
        raise ValueError(f"memory size {text!r} must be positive")
    return value


def parse_output_file(text: str) -> Path:
    """A file to (over)write: not a folder, and its folder, if it exists, is a folder."""
    path = Path(text)
    if path.is_dir():
        raise ValueError(f"{text} is a folder; give a file name to write, e.g. {path / 'out.json'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise ValueError(f"{parent} is a file, so {text} cannot be created")
            break
    return path


def parse_output_folder(text: str) -> Path:
    """A folder to write into (created if missing): not an existing file, nor under one."""
    path = Path(text)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise ValueError(f"{p} is a file; give a folder to write into")
            break
    return path
