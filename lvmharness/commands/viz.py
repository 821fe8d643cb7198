"""``lvm viz ...``: serve the architecture page. The page is the top-level ``viz`` package (flask), which the
library never imports; this runs it as ``python -m viz`` would, with the page's own flags."""

from __future__ import annotations

import argparse
import sys


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Nothing: the page parses ``args.argv`` itself (``Command.passthrough``): --host, --port, --graphs, ..."""


def run(args: argparse.Namespace) -> int:
    import importlib.util
    import runpy

    if importlib.util.find_spec("viz") is None:
        raise ValueError("the viz package is not importable: run `lvm viz` from the repository root or install it")
    sys.argv = ["lvm viz", *args.argv]
    runpy.run_module("viz", run_name="__main__")
    return 0
