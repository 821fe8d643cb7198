"""``lvm baseline RUN -o FILE``: the deterministic records of a run (counts, not timings) as a CI baseline."""

from __future__ import annotations

import argparse

from lvmharness.core.argtypes import output_file
from lvmharness.core.fileio import atomic_write_json
from lvmharness.store.compare import DETERMINISTIC_METRICS, baseline_records
from lvmharness.store.loading import load_records
from lvmharness.store.rules import CompareError


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run")
    p.add_argument("-o", "--output", type=output_file, required=True, help="baseline JSON file to write")
    p.add_argument("--metric", action="append", help="metrics to keep (default: flops, flops_scaling)")


def run(args: argparse.Namespace) -> int:

    recs = baseline_records(load_records(args.run), args.metric or DETERMINISTIC_METRICS)
    if not recs:
        raise CompareError(f"{args.run} has no ok records of {args.metric or DETERMINISTIC_METRICS}")
    atomic_write_json(args.output, recs)
    print(f"wrote {len(recs)} baseline records to {args.output}")
    return 0
