"""The accuracy ladder as a benchmark: ``lvm accuracy --config CONFIG`` run once, end to end, the way a user runs it
(a fresh process: interpreter and torch start-up, reading the IDX files, training and evaluating every ladder
model, writing the records), its wall time kept by pytest-benchmark and each model's ``train_result`` record
(top-1, params, GMACs, training time, batch-1 latency) in ``extra_info``.

    pytest benches/bench_accuracy.py --lvm-accuracy quick --benchmark-json accuracy.json   # ~5 min, 2 idle cores

Skipped unless ``--lvm-accuracy`` is given: it takes minutes, not seconds. One round: a second round would train
the same models on the same images with the same seed again (the same top-1, see docs/accuracy.md), and a wall time
of minutes is not a sub-second timing that needs repeats to be read. Run it on an idle machine: every other job on
the cores slows it, and the bench says so (``load_avg_1min`` before and after).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lvmharness.bench import LvmSession
from lvmharness.store.loading import load_records
from lvmharness.store.run_ids import new_run_id

# What extra_info keeps of each model's train_result record (the values the command's table prints).
KEPT = ("params", "gmacs", "top1", "top5", "train_s", "latency_b1_ms_p50")


def bench_accuracy_ladder(lvm_session: LvmSession, benchmark: Any, tmp_path: Path) -> None:
    config = lvm_session.options.accuracy
    if config is None:
        pytest.skip("the accuracy ladder takes minutes: select it with --lvm-accuracy quick (or full)")
    run_id = new_run_id()
    cmd = [sys.executable, "-m", "lvmharness", "accuracy", "--config", config, "--out",
           str(lvm_session.options.out), "--run-id", run_id, "--work-dir", str(tmp_path / "checkpoints"),
           "--data-dir", str(lvm_session.options.data_dir)]
    load_before = os.getloadavg()[0]
    done = benchmark.pedantic(subprocess.run, args=(cmd,), kwargs={"capture_output": True, "text": True},
                              rounds=1, iterations=1, warmup_rounds=0)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
    run_dir = lvm_session.options.out / run_id
    results = [r for r in load_records(run_dir) if r["metric"] == "train_result"]
    assert len(results) >= 9, f"expected a train_result record per ladder model (>= 9) in {run_dir}"
    benchmark.extra_info.update(
        config=config, command=" ".join(cmd[1:]), load_avg_1min_before=load_before,
        load_avg_1min_after=os.getloadavg()[0], cpu_count=os.cpu_count(), records=str(run_dir),
        models={r["alias"]: {k: r["values"].get(k) for k in KEPT} for r in results},
        best_top1=max(r["values"]["top1"] for r in results),
    )
    print(done.stdout)
