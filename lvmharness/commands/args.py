"""argparse ``type=`` parsers shared by the subcommands: a bad value is argparse's one-line error and exit 2, before
any work starts (no model built, nothing written)."""

from __future__ import annotations

import argparse
import math
from pathlib import Path


def int_at_least(low: int, high: int | None = None) -> type[int]:
    """An integer in [low, high]; the error says what is valid."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low or (high is not None and value > high):
            valid = f"between {low} and {high:,}" if high is not None else f">= {low}"
            raise argparse.ArgumentTypeError(f"must be an integer {valid}, got {text}")
        return value

    return parse  # type: ignore[return-value]


def finite_float_at_least(low: float) -> type[float]:
    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"must be a finite number >= {low:g}, got {text}")
        return value

    return parse  # type: ignore[return-value]


def int_list(low: int) -> type[list[int]]:
    """A comma list of integers >= low, e.g. ``224,384``."""
    one = int_at_least(low)

    def parse(text: str) -> list[int]:
        items = [t.strip() for t in text.split(",") if t.strip()]
        if not items:
            raise argparse.ArgumentTypeError(f"expected a comma list of integers >= {low}, got {text!r}")
        out = []
        for item in items:
            try:
                out.append(one(item))
            except argparse.ArgumentTypeError as exc:
                raise argparse.ArgumentTypeError(f"{item!r} in {text!r}: {exc}") from None
        return out

    return parse  # type: ignore[return-value]


def output_file(text: str) -> Path:
    """A file to (over)write: not a folder, and its folder, if it exists, is a folder."""
    path = Path(text)
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name to write, e.g. {path / 'out.json'}")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise argparse.ArgumentTypeError(f"{parent} is a file, so {text} cannot be created")
            break
    return path


def output_folder(text: str) -> Path:
    """A folder to write into (created if missing): not an existing file, nor under one."""
    path = Path(text)
    for p in (path, *path.parents):
        if p.exists():
            if not p.is_dir():
                raise argparse.ArgumentTypeError(f"{p} is a file; give a folder to write into")
            break
    return path
