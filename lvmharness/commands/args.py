"""argparse ``type=`` parsers shared by the subcommands: a bad value is argparse's one-line error and exit 2, before
any work starts (no model built, nothing written)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lvmharness.parsing import parse_int_list, parse_seconds

T = TypeVar("T")


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


def argument_type(parse: Callable[[str], T]) -> Callable[[str], T]:
    """One of ``lvmharness.parsing``'s parsers as an argparse ``type=``: its ValueError message (what was wrong,
    what is valid) becomes argparse's error after the option name, instead of a generic 'invalid value'."""

    def typed(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    typed.__name__ = parse.__name__
    return typed


int_list = argument_type(parse_int_list)  # '224,384': positive integers
seconds = argument_type(parse_seconds)  # finite, >= 0


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
