"""``lvm viz ...``: serve the architecture page (flask), with the page's own flags.

Installed, the page is ``lvmharness.viz`` (the repository's ``viz/`` folder, shipped inside our namespace); in a
checkout run with ``PYTHONPATH`` pointing at it, the top-level ``viz`` package. The library never imports it: this
runs it as ``python -m`` would.
"""

from __future__ import annotations

import argparse
import importlib.util
import runpy
import sys

from lvmharness.core.errors import UserError


class PageNotInstalledError(UserError):
    """Neither ``lvmharness.viz`` nor a checkout's ``viz`` package can be imported."""


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Nothing: the page parses ``args.argv`` itself (``Command.passthrough``): --host, --port, --graphs, ..."""


def page_module() -> str:
    for name in ("lvmharness.viz", "viz"):
        if importlib.util.find_spec(name) is not None:
            return name
    raise PageNotInstalledError("the architecture page is not importable: install lvmharness (it ships "
                                "lvmharness.viz) or run `lvm viz` from the repository root")


def run(args: argparse.Namespace) -> int:
    module = page_module()
    sys.argv = ["lvm viz", *args.argv]
    runpy.run_module(module, run_name="__main__")
    return 0
