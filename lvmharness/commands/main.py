"""``lvm`` — the command line (also ``python -m lvmharness``).

Each subcommand is one line of ``COMMANDS``: its name, the module that implements it and a one-line help. That
module has ``add_arguments(parser)`` and ``run(args) -> int`` (0 ok, 1 a finding such as a regression, 2 bad input).
A ``UserError`` (``lvmharness.core.errors``) raised by a command is one line on stderr and exit 2; any other
exception is a bug and propagates with its traceback (exit 1).
It is imported only when its subcommand runs or prints its ``--help``, so ``lvm compare`` and ``lvm report`` never
pay for importing torch and timm (several seconds) they do not use. Keep those modules' top-level imports light:
import torch inside ``run``.

Adding a subcommand: write the module, add one ``Command(...)`` line below.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from types import ModuleType

from lvmharness import __version__
from lvmharness.core.errors import UserError


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # has add_arguments(parser) and run(args) -> int; imported when this subcommand is chosen
    help: str
    # The module parses its own arguments: everything after the name reaches run() as ``args.argv`` untouched.
    passthrough: bool = False


COMMANDS: tuple[Command, ...] = (
    Command("models", "lvmharness.commands.models", "list model aliases, families and default input sizes"),
    Command("latency", "lvmharness.commands.latency", "forward latency and throughput of one model at one shape"),
    Command("flops", "lvmharness.commands.flops", "params, MACs and FLOPs (forward and forward+backward), per module"),
    Command("graph", "lvmharness.commands.graph",
            "export the module tree with shapes, params, MACs, memory (graph JSON)"),
    Command("train", "lvmharness.commands.train",
            "train / fine-tune a model (same flags as train.py; lvm train --help)", passthrough=True),
    Command("viz", "lvmharness.commands.viz", "serve the architecture page (same as python model_viz.py)",
            passthrough=True),
    Command("report", "lvmharness.commands.report", "HTML page, PNG plots and CSV from run folders or results files"),
    Command("compare", "lvmharness.commands.compare", "compare two runs; exit 1 on a regression, 2 on bad input"),
    Command("baseline", "lvmharness.commands.baseline",
            "write the deterministic records of a run (params, MACs, graph) as a baseline"),
    Command("env", "lvmharness.commands.env", "print what env.json records about this machine"),
    Command("merge", "lvmharness.commands.merge", "merge run folders (shards, several machines) into one run folder"),
    Command("sweep", "lvmharness.commands.sweep",
            "run the benches as N shards (Slurm job array or local) and merge them"),
    Command("layers", "lvmharness.commands.layers",
            "measured time per module beside its MACs, achieved FLOP/s and roofline place"),
    Command("memory", "lvmharness.commands.memory",
            "peak memory of a train or inference step predicted on fake tensors; largest batch for a budget"),
    Command("history", "lvmharness.commands.history",
            "runs kept by commit and machine: add, list, detect change points, export, a static site"),
    Command("accuracy", "lvmharness.commands.accuracy",
            "train the model ladder on Fashion-MNIST: top-1 vs params, GMACs, latency, training time"),
)
BY_NAME = {c.name: c for c in COMMANDS}

def load(command: Command) -> ModuleType:
    return importlib.import_module(command.module)


def build_parser(with_arguments: Iterable[str] = ()) -> argparse.ArgumentParser:
    """The ``lvm`` parser; only the subcommands named in ``with_arguments`` get their arguments (and imports)."""
    p = argparse.ArgumentParser(prog="lvm", description="Measure what vision models cost.")
    p.add_argument("--version", action="version", version=f"lvmharness {__version__}")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = set(with_arguments)
    for command in COMMANDS:
        sp = sub.add_parser(command.name, help=command.help, description=command.help,
                            add_help=not command.passthrough)
        if command.name in wanted and not command.passthrough:
            load(command).add_arguments(sp)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    raw = list(sys.argv[1:] if argv is None else argv)
    chosen = BY_NAME.get(raw[0]) if raw else None
    if chosen is not None and chosen.passthrough:
        args = argparse.Namespace(command=chosen.name, argv=raw[1:])
    else:
        args = build_parser([chosen.name] if chosen else []).parse_args(raw)
    try:
        result: int = load(BY_NAME[args.command]).run(args)
    except UserError as exc:  # a mistake in the input: one line, exit 2. Anything else is a bug: its traceback, exit 1
        print(f"lvm {args.command}: error: {exc}", file=sys.stderr)
        return 2
    return result


if __name__ == "__main__":
    sys.exit(main())
