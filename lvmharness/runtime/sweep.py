"""A sweep: the benches as N shards through submitit (a Slurm job array, or local processes), then merged.

The command line is ``lvmharness.commands.sweep``::

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

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvmharness.core.errors import UserError
from lvmharness.store.loading import RESULTS_FILE, writer_files
from lvmharness.store.merge import MergeResult, merge_runs
from lvmharness.store.run_ids import new_run_id

SWEEP_DIR = ".sweep"  # inside --out: shard folders and submitit's logs, kept after the merge
# pytest exit codes (pytest.ExitCode): 0 all passed, 1 some benches failed (their records say why), 5 none collected
# (a shard that got no case). 2 interrupted, 3 internal error, 4 usage error: the shard did not run as asked.
FINISHED_CODES = {0: "every bench passed", 1: "finished, some benches failed", 5: "no cases in this shard"}
# Bounds of --shards. Slurm: one job array, whose size slurm.conf's MaxArraySize limits (default 1001, see
# slurm.conf(5)); a larger sweep is several sweeps. Local: the shards run at once, each a pytest process that imports
# torch, so more than a few per core only thrash the machine.
MAX_SLURM_SHARDS = 1001
LOCAL_SHARDS_PER_CORE = 4


class SweepError(UserError, ValueError):
    """A sweep that cannot start as asked; the message says what to change."""


def _cores() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def check_executor(kind: str, shards: int) -> None:
    """Before anything is created: the executor exists here and the shard count is within its bound."""
    import shutil

    if kind == "slurm":
        missing = [tool for tool in ("sbatch", "srun") if shutil.which(tool) is None]
        if missing:
            raise SweepError(f"--executor slurm: {' and '.join(missing)} not found on PATH (no Slurm on this "
                             "machine); run on a Slurm login node, or use --executor local")
    else:
        bound = LOCAL_SHARDS_PER_CORE * _cores()
        if shards > bound:
            raise SweepError(f"--shards {shards} with --executor local: at most {bound} ({LOCAL_SHARDS_PER_CORE} per "
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


@dataclass(frozen=True)
class SweepSpec:
    """What ``lvm sweep`` was asked for."""

    executor: str  # "slurm" or "local"
    shards: int
    out: Path
    pytest_args: tuple[str, ...]
    run_id: str | None = None
    partition: str | None = None
    gpus_per_shard: int = 0
    cpus_per_shard: int | None = None
    time_min: int = 60
    poll_s: float = 1.0


@dataclass
class SweepResult:
    run_id: str
    work: Path  # shard folders and logs
    outcomes: list[ShardOutcome]
    merged: MergeResult | None  # None: no shard wrote any record

    @property
    def ok(self) -> bool:
        return self.merged is not None and all(o.status == "ok" for o in self.outcomes)


def _executor(spec: SweepSpec, folder: Path) -> Any:
    import submitit  # the cluster client: imported when a sweep starts, not when the CLI parses

    executor = submitit.AutoExecutor(folder=folder, cluster=spec.executor)
    params: dict[str, Any] = {"name": "lvm-sweep", "timeout_min": spec.time_min}
    if spec.executor == "slurm":
        params.update(slurm_array_parallelism=spec.shards, gpus_per_node=spec.gpus_per_shard)
        if spec.partition:
            params["slurm_partition"] = spec.partition
        if spec.cpus_per_shard:
            params["cpus_per_task"] = spec.cpus_per_shard
    executor.update_parameters(**params)
    return executor


def _wait(jobs: Sequence[Any], poll_s: float) -> None:
    from tqdm import tqdm  # the progress bar: only a running sweep needs it

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


def shard_pytest_args(pytest_args: Sequence[str]) -> tuple[str, ...]:
    """The pytest arguments every shard gets (a leading ``--`` dropped); the per-shard options are refused."""
    args = list(pytest_args)
    if args[:1] == ["--"]:
        args = args[1:]
    if not args:
        raise SweepError("no pytest arguments: put them after --, e.g. lvm sweep --shards 2 -- benches/")
    for a in args:
        if a.startswith(("--lvm-shard", "--lvm-out", "--lvm-run-id")):
            raise SweepError(f"{a.split('=')[0]} is set by lvm sweep for each shard; leave it out of the pytest args")
    return tuple(args)


def _local_threads(spec: SweepSpec, notify: Callable[[str], None]) -> int | None:
    """Each local shard's share of the cores (OMP_NUM_THREADS); None for Slurm (each task has its own node)."""
    if spec.executor != "local":
        return None
    cores = _cores()
    if spec.shards > cores:
        notify(f"{spec.shards} local shards share {cores} cores: timed numbers will contend")
    return max(1, cores // spec.shards)


def run_sweep(spec: SweepSpec, notify: Callable[[str], None]) -> SweepResult:
    """Submit the shards, wait for them, merge every shard folder that holds records into ``out/<run-id>``.
    ``notify`` receives progress lines (the caller prints them)."""
    check_executor(spec.executor, spec.shards)
    run_id = spec.run_id or new_run_id()
    out = spec.out.resolve()
    work, merged = out / SWEEP_DIR / run_id, out / run_id
    if merged.exists():
        raise SweepError(f"{merged} already exists: choose another --run-id")
    work.mkdir(parents=True, exist_ok=True)
    threads = _local_threads(spec, notify)
    executor = _executor(spec, work / "logs")
    n = spec.shards
    indices = list(range(1, n + 1))
    shard_outs = [str(work / f"shard-{k}") for k in indices]
    jobs = executor.map_array(run_shard, indices, [n] * n, [list(spec.pytest_args)] * n, shard_outs, [run_id] * n,
                              [os.getcwd()] * n, [threads] * n)
    notify(f"{n} shards submitted ({spec.executor}), job ids {', '.join(str(j.job_id) for j in jobs)}; logs in "
           f"{work / 'logs'}")
    _wait(jobs, spec.poll_s)
    outcomes = [_outcome(j, k, n) for j, k in zip(jobs, indices, strict=True)]
    sources = [s for s in (Path(o) / run_id for o in shard_outs) if writer_files(s) or (s / RESULTS_FILE).is_file()]
    return SweepResult(run_id, work, outcomes, merge_runs(sources, merged) if sources else None)
