"""``lvm merge RUN... -o DIR``: run folders (shards of a sweep, runs on several machines) into one run folder.

The merge itself is ``lvmharness.store.merge``; this module parses and prints only.
"""

from __future__ import annotations

import argparse
import sys

from lvmharness.core.argtypes import output_folder
from lvmharness.store.loading import torn_lines
from lvmharness.store.merge import merge_runs


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", metavar="RUN", help="run folders to merge (shards, or runs of several machines)")
    p.add_argument("-o", "--output", type=output_folder, required=True, metavar="DIR",
                   help="the merged run folder (new or empty)")


def run(args: argparse.Namespace) -> int:
    result = merge_runs(args.runs, args.output)
    for note in (n for r in args.runs for n in torn_lines(r)):
        print(f"lvm merge: {note}", file=sys.stderr)
    print(f"merged {result.records} records of {result.sources} run folders into {result.out}")
    return 0
