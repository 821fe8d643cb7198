"""``train.py`` and ``lvm train``: parse, run, and turn every user mistake into one clear line and exit code 2
(3 when training itself stopped, e.g. on a non-finite loss). Options are spelled ``--field`` after TrainConfig.

``lvm train`` passes its arguments through untouched (``Command.passthrough``): this module parses them itself
with the same parser as ``train.py``. Importing :mod:`lvmharness.train` imports torch; so does this module.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from lvmharness.core.errors import UserError
from lvmharness.train.config import build_parser, config_from_args
from lvmharness.train.fit import train
from lvmharness.train.loop import NonFiniteLossError


@contextmanager
def sigterm_as_exit() -> Iterator[None]:
    """SIGTERM (``kill``, Slurm's time limit, torchrun stopping its workers) as SystemExit(143) while training: the
    default action ends the process at once, leaving the temporary file of a checkpoint being written behind; an
    exception runs the cleanups (``fileio.atomic_write`` removes its temporary file; the last complete checkpoint
    stays)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: Sequence[str] | None = None, prog: str = "train.py") -> int:
    args = build_parser(prog).parse_args(argv)
    try:
        with sigterm_as_exit():
            summary = train(config_from_args(args))
    except NonFiniteLossError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 3
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if summary.get("top1") is not None and "run_dir" in summary:
        print(f"done: top-1 {summary['top1']:.2f}% after {summary['epochs']} epoch(s); "
              f"records in {summary['run_dir']}; checkpoint {summary['checkpoint']}")
    return 0


def add_arguments(p: argparse.ArgumentParser) -> None:
    """Nothing: the training command line parses ``args.argv`` itself (``Command.passthrough``)."""


def run(args: argparse.Namespace) -> int:
    return main(args.argv, prog="lvm train")
