"""The accuracy ladder as a benchmark: ``lvm accuracy --config CONFIG`` run once, end to end, the way a user runs it
(a fresh process: interpreter and torch start-up, reading the IDX files, training and evaluating every ladder
model, writing the records), its wall time kept by pytest-benchmark and the printed table in ``extra_info``.

    pytest benches/bench_accuracy.py --lvm-accuracy quick --benchmark-json accuracy.json   # ~5 min, 2 idle cores

Skipped unless ``--lvm-accuracy`` is given: it takes minutes, not seconds. One round: a second round would train
the same models on the same images with the same seed again (the same top-1, see docs/accuracy.md), and a wall time
of minutes is not a sub-second timing that needs repeats to be read. Run it on an idle machine: every other job on
the cores slows it, and the bench says so (``load_avg_1min`` before and after).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from lvmharness.bench import LvmSession

# One row of the command's table: model, params (M), GMACs, top-1 %, top-5 %, train s, batch-1 ms.
ROW = re.compile(r"^(ladder_\w+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+)\s+([\d.]+|-)$")


def _load() -> float:
    return os.getloadavg()[0]


def bench_accuracy_ladder(lvm_session: LvmSession, benchmark: Any, tmp_path: Path) -> None:
    config = lvm_session.options.accuracy
    if config is None:
        pytest.skip("the accuracy ladder takes minutes: select it with --lvm-accuracy quick (or full)")
    cmd = [sys.executable, "-m", "lvmharness", "accuracy", "--config", config, "--out",
           str(lvm_session.options.out), "--work-dir", str(tmp_path / "checkpoints"), "--data-dir",
           str(lvm_session.options.data_dir)]
    load_before = _load()
    done = benchmark.pedantic(subprocess.run, args=(cmd,), kwargs={"capture_output": True, "text": True},
                              rounds=1, iterations=1, warmup_rounds=0)
    assert done.returncode == 0, f"{' '.join(cmd)} exited {done.returncode}: {done.stderr.strip()[-2000:]}"
    rows = [m.groups() for m in map(ROW.match, done.stdout.splitlines()) if m]
    assert len(rows) >= 9, f"expected the ladder's table (>= 9 models) in the output:\n{done.stdout[-3000:]}"
    records = re.search(r"records: (\S+);", done.stdout)
    benchmark.extra_info.update(
        config=config, command=" ".join(cmd[1:]), load_avg_1min_before=load_before, load_avg_1min_after=_load(),
        cpu_count=os.cpu_count(), records=records.group(1) if records else None,
        models={r[0]: {"params_m": float(r[1]), "gmacs": float(r[2]), "top1": float(r[3]), "top5": float(r[4]),
                       "train_s": float(r[5]), "latency_b1_ms_p50": None if r[6] == "-" else float(r[6])}
                for r in rows},
        best_top1=max(float(r[3]) for r in rows),
    )
    print(done.stdout)
