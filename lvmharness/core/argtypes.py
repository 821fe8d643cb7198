"""argparse ``type=`` parsers shared by the subcommands: a bad value is argparse's one-line error and exit 2, before
any work starts (no model built, nothing written).

The parsing itself lives in ``lvmharness.core.parsing`` (torch-free, raising ValueError), shared with the pytest
plugin's options; here each parser only becomes an argparse type."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from lvmharness.core.parsing import (
    MAX_BATCH_SIZE,
    MAX_IMG_SIZE,
    parse_img_sizes,
    parse_int_in,
    parse_int_list,
    parse_output_file,
    parse_output_folder,
    parse_seconds,
    parse_timeout,
)

T = TypeVar("T")


def argument_type(parse: Callable[[str], T], name: str | None = None) -> Callable[[str], T]:
    """One of ``lvmharness.core.parsing``'s parsers as an argparse ``type=``: its ValueError message (what was wrong,
    what is valid) becomes argparse's error after the option name, instead of a generic 'invalid value'.
    ``name``: the type's name (default: the parser's)."""

    def typed(text: str) -> T:
        try:
            return parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    typed.__name__ = name or parse.__name__
    return typed


def int_at_least(low: int, high: int | None = None) -> type[int]:
    """An integer in [low, high]; the error says what is valid."""

    def parse(text: str) -> int:
        return parse_int_in(text, low, high)

    return argument_type(parse)  # type: ignore[return-value]


int_list = argument_type(parse_int_list)  # '1,8,32': positive integers
img_size_list = argument_type(parse_img_sizes, "img_size_list")  # '224,384': sides in 1..MAX_IMG_SIZE px
seconds = argument_type(parse_seconds)  # finite, >= 0, at most a week
timeout = argument_type(parse_timeout)  # finite, > 0, at most a week
batch_size = int_at_least(1, MAX_BATCH_SIZE)  # every --batch-size of the project
img_size = int_at_least(1, MAX_IMG_SIZE)  # every --img-size of the project (px per side)
output_file: Callable[[str], Path] = argument_type(parse_output_file, "output_file")
output_folder: Callable[[str], Path] = argument_type(parse_output_folder, "output_folder")
