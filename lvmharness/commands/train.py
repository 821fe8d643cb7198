"""``lvm train ...``: train.py's own parser, flags and all."""

from __future__ import annotations

import argparse


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Nothing: the training command line parses ``args.argv`` itself (``Command.passthrough``)."""


def run(args: argparse.Namespace) -> int:
    from lvmharness.train import main

    return main(args.argv, prog="lvm train")
