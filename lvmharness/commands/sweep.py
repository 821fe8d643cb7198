"""``lvm sweep``: run the benches as N shards (a Slurm job array, or local processes) and merge them.

The sweep itself is ``lvmharness.runtime.sweep``; this module parses the options and prints what happened.
Exit 0 when every shard finished and its benches passed, 1 otherwise (the records of every shard that wrote any
are merged all the same).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lvmharness.core.argtypes import int_at_least, output_folder, seconds
from lvmharness.runtime.sweep import (
    LOCAL_SHARDS_PER_CORE,
    MAX_SLURM_SHARDS,
    SweepResult,
    SweepSpec,
    run_sweep,
    shard_pytest_args,
)
from lvmharness.store.run_ids import run_id_arg


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--executor", choices=["slurm", "local"], default="slurm",
                   help="slurm: one job array on the cluster; local: processes on this machine (tests, CI)")
    p.add_argument("--shards", type=int_at_least(1, MAX_SLURM_SHARDS), required=True,
                   help=f"number of shards (array tasks), at most {MAX_SLURM_SHARDS} (Slurm's default MaxArraySize); "
                        f"local: at most {LOCAL_SHARDS_PER_CORE} per core")
    p.add_argument("--out", type=output_folder, default="results", metavar="DIR",
                   help="results folder: the merged run lands in DIR/<run-id>, shards and logs in DIR/.sweep")
    p.add_argument("--run-id", type=run_id_arg, default=None, help="run id (default: UTC time + random suffix)")
    p.add_argument("--partition", default=None, help="Slurm partition")
    p.add_argument("--gpus-per-shard", type=int_at_least(0, 64), default=0, metavar="G",
                   help="GPUs per array task (Slurm)")
    p.add_argument("--cpus-per-shard", type=int_at_least(1, 4096), default=None, metavar="C",
                   help="CPUs per array task (Slurm)")
    p.add_argument("--time", type=int_at_least(1, 525_600), default=60, metavar="MIN",
                   help="time limit per shard in minutes (at most a year)")
    p.add_argument("--poll-s", type=seconds, default=1.0, help=argparse.SUPPRESS)
    p.add_argument("pytest_args", nargs=argparse.REMAINDER, metavar="-- PYTEST_ARGS",
                   help="what each shard passes to pytest, e.g. -- benches/ --lvm-profile smoke")


def _notify(line: str) -> None:
    print(f"lvm sweep: {line}", file=sys.stderr)


def _report(result: SweepResult, shards: int) -> int:
    for o in result.outcomes:
        line = f"shard {o.index}/{o.count}: {o.status} ({o.detail})"
        if o.status != "ok" and o.log is not None:
            line += f"; log: {o.log} (stderr: {o.err})"
        print(line)
    if result.merged is None:
        _notify(f"no shard wrote any record; logs in {result.work / 'logs'}")
        return 1
    print(f"merged run folder: {result.merged.out}  ({result.merged.records} records from {result.merged.sources} "
          f"of {shards} shards)")
    return 0 if result.ok else 1


def run(args: argparse.Namespace) -> int:
    spec = SweepSpec(executor=args.executor, shards=args.shards, out=Path(args.out),
                     pytest_args=shard_pytest_args(args.pytest_args), run_id=args.run_id, partition=args.partition,
                     gpus_per_shard=args.gpus_per_shard, cpus_per_shard=args.cpus_per_shard, time_min=args.time,
                     poll_s=args.poll_s)
    return _report(run_sweep(spec, _notify), args.shards)
