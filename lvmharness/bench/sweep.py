"""``lvm sweep``: run the benches as N shards through submitit (a Slurm job array, or local processes) and merge.

    lvm sweep --executor slurm --shards 8 --partition gpu --gpus-per-shard 1 --time 120 -- \\
        benches/ --lvm-profile full --lvm-device cuda
    lvm sweep --executor local --shards 2 --out results -- benches/ --lvm-profile smoke

Each shard is ``python -m pytest <pytest args> --lvm-shard K/N --lvm-run-id RUN --lvm-out <out>/.sweep/RUN/shard-K``
run by submitit (``map_array``: one Slurm array of N tasks). Every shard computes the same cost-balanced plan, so
the shards are disjoint and cover the matrix. ``lvm sweep`` waits with a progress bar, then merges every shard folder
that holds records into ``<out>/RUN`` (see ``lvmharness.store.merge``) and prints it. A shard that failed is reported
with its log; the records it finished before failing are merged like the others.

``--executor local`` runs the shards as processes on this machine (what tests and CI use). They run at the same
time, so each gets its share of the cores (``OMP_NUM_THREADS``, which torch takes as its thread count; recorded in
every timed record's provenance): timed numbers of a local sweep are per share, not per machine.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvmharness.core.argtypes import int_at_least, output_folder, seconds
from lvmharness.store.results import new_run_id, run_id_arg

SWEEP_DIR = ".sweep"  # inside --out: shard folders and submitit's logs, kept after the merge
# pytest exit codes (pytest.ExitCode): 0 all passed, 1 some benches failed (their records say why), 5 none collected
# (a shard that got no case). 2 interrupted, 3 internal error, 4 usage error: the shard did not run as asked.
FINISHED_CODES = {0: "every bench passed", 1: "finished, some benches failed", 5: "no cases in this shard"}
# Bounds of --shards. Slurm: one job array, whose size slurm.conf's MaxArraySize limits (default 1001, see
# slurm.conf(5)); a larger sweep is several sweeps. Local: the shards run at once, each a pytest process that imports
# torch, so more than a few per core only thrash the machine.
MAX_SLURM_SHARDS = 1001
LOCAL_SHARDS_PER_CORE = 4


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_executor(kind: str, shards: int) -> None:
    """Before anything is created: the executor exists here and the shard count is within its bound."""
    import shutil

    if kind == "slurm":
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            raise ValueError(f"--executor slurm: {' and '.join(missing)} not found on PATH (no Slurm on this "
                             "machine); run on a Slurm login node, or use --executor local")
    else:
        bound = LOCAL_SHARDS_PER_CORE * _cores()
        if shards > bound:
            raise ValueError(f"--shards {shards} with --executor local: at most {bound} ({LOCAL_SHARDS_PER_CORE} per "
                             f"core, {_cores()} cores here), since local shards all run at once")


@dataclass(frozen=True)
class ShardOutcome:
    index: int
    count: int
    status: str  # "ok", "failures" (benches failed; records kept), "failed" (the shard did not finish)
    detail: str
    log: Path | None  # the task's stdout (the shard's pytest output)
    err: Path | None  # the task's stderr


def run_shard(index: int, count: int, pytest_args: Sequence[str], shard_out: str, run_id: str, cwd: str,
              threads: int | None) -> int:
    """The body of one array task: the shard's pytest, in a fresh interpreter, output to the task's log."""
    env = dict(os.environ)
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "pytest", *pytest_args, f"--lvm-shard={index}/{count}", f"--lvm-run-id={run_id}",
           f"--lvm-out={shard_out}"]
    print("lvm sweep shard:", " ".join(cmd), flush=True)
    return subprocess.run(cmd, cwd=cwd, env=env, check=False).returncode


def _executor(kind: str, folder: Path, args: argparse.Namespace) -> Any:
    import submitit

    executor = submitit.AutoExecutor(folder=folder, cluster=kind)
    params: dict[str, Any] = {"name": "lvm-sweep", "timeout_min": args.time}
    if kind == "slurm":
        params.update(slurm_array_parallelism=args.shards, gpus_per_node=args.gpus_per_shard)
        if args.partition:
            params["slurm_partition"] = args.partition
        if args.cpus_per_shard:
            params["cpus_per_task"] = args.cpus_per_shard
    executor.update_parameters(**params)
    return executor


def _wait(jobs: Sequence[Any], poll_s: float) -> None:
    from tqdm import tqdm

    with tqdm(total=len(jobs), desc="lvm sweep", unit="shard", file=sys.stderr) as bar:
        done = 0
        while done < len(jobs):
            now = sum(1 for j in jobs if j.done())
            if now != done:
                bar.update(now - done)
                done = now
            if done < len(jobs):
                time.sleep(poll_s)


def _outcome(job: Any, index: int, count: int) -> ShardOutcome:
    log, err = Path(job.paths.stdout), Path(job.paths.stderr)
    try:
        code = int(job.result())
    except Exception as exc:  # the task itself died: killed, timed out, node failure
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return ShardOutcome(index, count, "failed", f"{type(exc).__name__}: {first}", log, err)
    if code == 0 or code == 5:
        return ShardOutcome(index, count, "ok", FINISHED_CODES[code], log, err)
    if code == 1:
        return ShardOutcome(index, count, "failures", FINISHED_CODES[1], log, err)
    return ShardOutcome(index, count, "failed", f"pytest exit code {code}", log, err)


def sweep(args: argparse.Namespace) -> int:
    from lvmharness.store.merge import merge_runs
    from lvmharness.store.results import writer_files

    pytest_args = list(args.pytest_args)
    if pytest_args[:1] == ["--"]:
        pytest_args = pytest_args[1:]
    if not pytest_args:
        raise ValueError("no pytest arguments: put them after --, e.g. lvm sweep --shards 2 -- benches/")
    for a in pytest_args:
        if a.startswith(("--lvm-shard", "--lvm-out", "--lvm-run-id")):
            raise ValueError(f"{a.split('=')[0]} is set by lvm sweep for each shard; leave it out of the pytest args")
    check_executor(args.executor, args.shards)
    run_id = args.run_id or new_run_id()
    out = Path(args.out).resolve()
    work = out / SWEEP_DIR / run_id
    merged = out / run_id
    if merged.exists():
        raise ValueError(f"{merged} already exists: choose another --run-id")
    work.mkdir(parents=True, exist_ok=True)
    threads = None
    if args.executor == "local":
        cores = _cores()
        threads = max(1, cores // args.shards)
        if args.shards > cores:
            print(f"lvm sweep: {args.shards} local shards share {cores} cores: timed numbers will contend",
                  file=sys.stderr)
    executor = _executor(args.executor, work / "logs", args)
    indices = list(range(1, args.shards + 1))
    shard_outs = [str(work / f"shard-{k}") for k in indices]
    jobs = executor.map_array(
        run_shard, indices, [args.shards] * args.shards, [pytest_args] * args.shards, shard_outs,
        [run_id] * args.shards, [os.getcwd()] * args.shards, [threads] * args.shards,
    )
    print(f"lvm sweep: {args.shards} shards submitted ({args.executor}), job ids "
          f"{', '.join(str(j.job_id) for j in jobs)}; logs in {work / 'logs'}", file=sys.stderr)
    _wait(jobs, args.poll_s)
    outcomes = [_outcome(j, k, args.shards) for j, k in zip(jobs, indices, strict=True)]
    sources = [Path(o) / run_id for o in shard_outs]
    sources = [s for s in sources if writer_files(s) or (s / "results.json").is_file()]
    for o in outcomes:
        line = f"shard {o.index}/{o.count}: {o.status} ({o.detail})"
        if o.status != "ok" and o.log is not None:
            line += f"; log: {o.log} (stderr: {o.err})"
        print(line)
    if not sources:
        print(f"lvm sweep: no shard wrote any record; logs in {work / 'logs'}", file=sys.stderr)
        return 1
    result = merge_runs(sources, merged)
    print(f"merged run folder: {result.out}  ({result.records} records from {result.sources} of {args.shards} "
          "shards)")
    return 0 if all(o.status == "ok" for o in outcomes) else 1


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


def run(args: argparse.Namespace) -> int:
    return sweep(args)
