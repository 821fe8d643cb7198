"""Parsers of values users type: comma lists, positive integers, finite numbers, memory sizes.

Torch-free. Each raises BadValueError (a UserError and a ValueError) with what was wrong and what is valid, without
naming an option: the front end (the pytest plugin's and the CLI's argparse ``type=`` functions) prefixes the option
the user typed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from lvmharness.core.errors import BadValueError
from lvmharness.core.outputs import check_output_file, check_output_folder

# Ranges of the numbers the front ends take, stated once. They keep every tensor's element count (batch x 3 x side^2
# <= 2^20 x 3 x 2^26, about 2.1e14) far inside torch's int64 sizes, so a typo is refused where it is typed instead of
# by a C++ check deep inside torch, after the model was built.
MAX_BATCH_SIZE = 1 << 20  # images per step (1,048,576)
MAX_IMG_SIZE = 8192  # px per side of a square input
MAX_SEED = 2**32 - 1  # numpy's RandomState.seed takes 32 bits (a torch DataLoader worker seeds numpy from it)
MAX_BYTES = 2**60  # 1 EiB: a memory size or budget beyond it is a typo
MAX_SECONDS = 7 * 24 * 3600.0  # a week: the longest timeout or time budget worth asking for
_INTEGER = re.compile(r"\s*[+-]?[0-9]+\s*")  # ASCII digits only: int() also takes '٥٦' and '1_000'

_BYTE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}


def parse_list(text: str) -> list[str]:
    """'a, b,,c' -> ['a', 'b', 'c']; an empty list is an error (an empty option is a mistake, not 'all')."""
    items = [t.strip() for t in text.split(",") if t.strip()]
    if not items:
        raise BadValueError(f"{text!r} names nothing: expected a comma list such as 'a,b'")
    return items


def shorten(text: str, limit: int = 40) -> str:
    """``text`` for an error message: a 5,000-digit typo is not echoed back whole."""
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text):,} characters)"


def _ascii_int(text: str) -> int | None:
    """The integer ``text`` spells in ASCII digits, else None (also for more digits than Python converts)."""
    if not _INTEGER.fullmatch(text) or len(text.strip()) > 40:
        return None
    return int(text)


def parse_positive_int(text: str, high: int | None = None) -> int:
    value = _ascii_int(text)
    if value is None:
        raise BadValueError(f"{shorten(text.strip())!r} is not an integer")
    if value < 1:
        raise BadValueError(f"{value} must be a positive integer")
    if high is not None and value > high:
        raise BadValueError(f"{value} must be a positive integer <= {high:,}")
    return value


def parse_int(text: str) -> int:
    """Any integer written in ASCII digits (ranges are checked where the value is used)."""
    value = _ascii_int(text)
    if value is None:
        raise BadValueError(f"expected an integer, got {shorten(text)!r}")
    return value


def parse_float(text: str) -> float:
    """A number written in ASCII (float() also reads '١.٥'); 'nan' and 'inf' pass, for the caller's range check."""
    if not text.isascii() or len(text) > 100:
        raise BadValueError(f"expected a number, got {shorten(text)!r}")
    try:
        return float(text)
    except ValueError:
        raise BadValueError(f"expected a number, got {shorten(text)!r}") from None


def parse_int_in(text: str, low: int, high: int | None = None) -> int:
    """An integer in [low, high] (``high`` None: no upper bound); the error says what is valid."""
    value = _ascii_int(text)
    if value is None:
        raise BadValueError(f"expected an integer, got {shorten(text)!r}")
    if value < low or (high is not None and value > high):
        valid = f"between {low} and {high:,}" if high is not None else f">= {low}"
        raise BadValueError(f"must be an integer {valid}, got {shorten(text.strip())}")
    return value


def parse_int_list(text: str, high: int | None = None) -> list[int]:
    """'1, 8,32' -> [1, 8, 32]; every item a positive integer (at most ``high``)."""
    out = []
    for item in parse_list(text):
        try:
            out.append(parse_positive_int(item, high))
        except ValueError as exc:
            raise BadValueError(f"{exc} (expected a comma list of positive integers, e.g. '1,8,32')") from None
    return out


def parse_batch_sizes(text: str) -> list[int]:
    """A comma list of batch sizes, each in 1..MAX_BATCH_SIZE."""
    return parse_int_list(text, MAX_BATCH_SIZE)


def parse_img_sizes(text: str) -> list[int]:
    """A comma list of square input sides in px, each in 1..MAX_IMG_SIZE."""
    return parse_int_list(text, MAX_IMG_SIZE)


def parse_seconds(text: str) -> float:
    """A finite, non-negative number of seconds ('nan', 'inf' and negative values are errors), at most a week."""
    try:
        value = parse_float(text)
    except ValueError:
        raise BadValueError(f"{shorten(text)!r} is not a number of seconds") from None
    if not math.isfinite(value) or value < 0 or value > MAX_SECONDS:
        raise BadValueError(f"{shorten(text)!r} must be a finite number of seconds >= 0 and <= {MAX_SECONDS:.0f} (a "
                         "week), e.g. 2.5")
    return value


def parse_timeout(text: str) -> float:
    """A time limit: a finite number of seconds > 0 (a limit of 0 would stop everything at once), at most a week."""
    value = parse_seconds(text)
    if value <= 0:
        raise BadValueError(f"{shorten(text)!r} must be a number of seconds > 0 (a limit of 0 stops the work at once)")
    return value


def parse_bytes(text: str) -> int:
    """'2GiB', '512MiB', '1.5GB', '1000000' -> bytes."""
    m = re.fullmatch(r"\s*([0-9]+(?:\.[0-9]+)?)\s*([a-zA-Z]*)\s*", text)  # ASCII: \d also matches '٥'

    unit = m.group(2).lower() if m else ""
    if not m or (unit and unit not in _BYTE_UNITS):
        raise BadValueError(
            f"memory size {shorten(text)!r} not understood: use e.g. 2GiB, 512MiB, 1.5GB or a byte count")
    number = float(m.group(1)) if m and len(m.group(1)) <= 40 else math.inf
    if not math.isfinite(number) or number * _BYTE_UNITS[unit or "b"] > MAX_BYTES:
        raise BadValueError(f"memory size {shorten(text)!r} is beyond {MAX_BYTES:,} bytes (1 EiB)")
    value = int(number * _BYTE_UNITS[unit or "b"])
    if value <= 0:
        raise BadValueError(f"memory size {text!r} must be positive")
    return value


def parse_output_file(text: str) -> Path:
    """A file to (over)write, checked by ``lvmharness.core.outputs`` (regular file or creatable, writable)."""
    return check_output_file(text)


def parse_output_folder(text: str) -> Path:
    """A folder to write into (created if missing), checked by ``lvmharness.core.outputs``."""
    return check_output_folder(text)
