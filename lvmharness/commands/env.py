"""``lvm env``: what env.json records about this machine."""

from __future__ import annotations

import argparse
import json


def add_arguments(p: argparse.ArgumentParser) -> None:
    """No options."""


def run(args: argparse.Namespace) -> int:
    from lvmharness.runtime import envinfo

    print(json.dumps(envinfo.collect(), indent=1))
    return 0
