"""Our trace folders in the tools people use besides TensorBoard: Holistic Trace Analysis and Perfetto/chrome."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from torch import nn

from lvmharness.runtime.traces import trace, trace_bytes, trace_files

STEPS = 2


@pytest.fixture(scope="module")
def case_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(64, 128), nn.GELU(), nn.Linear(128, 10)).eval()
    x = torch.randn(8, 64)

    def step() -> None:
        with torch.inference_mode():
            net(x)

    out = tmp_path_factory.mktemp("tb") / "latency-mlp"
    trace(step, out, torch.device("cpu"), active=STEPS, worker_name="mlp")
    return out


def test_trace_is_chrome_trace_event_json(case_dir: Path) -> None:
    """What Perfetto and chrome://tracing open: a JSON object with ``traceEvents`` of complete ("X") events."""
    (path,) = trace_files(case_dir)
    assert path.name.endswith(".pt.trace.json")
    doc = json.loads(path.read_text())
    events = doc["traceEvents"]
    ops = [e for e in events if e.get("ph") == "X" and e.get("cat") == "cpu_op"]
    assert {"aten::linear", "aten::gelu"} <= {e["name"] for e in ops}
    assert all(isinstance(e["ts"], int | float) and e["dur"] >= 0 for e in ops)
    steps = {e["name"] for e in events if e.get("name", "").startswith("ProfilerStep#")}
    assert len(steps) == STEPS  # only the active steps are recorded: the size cap
    assert doc["distributedInfo"] == {"backend": "none", "rank": 0, "world_size": 1}
    count, size = trace_bytes(case_dir.parent)
    assert count == 1 and size == path.stat().st_size


def test_holistic_trace_analysis_reads_the_cpu_trace(case_dir: Path) -> None:
    """HTA on a CPU-only trace: the op frame and the profiler steps work; GPU kernel analyses are empty."""
    hta = pytest.importorskip("hta.trace_analysis")
    # HTA drops the last profiler step unless told otherwise (often cut short in long training traces); ours are
    # whole, so keep it.
    analysis = hta.TraceAnalysis(trace_dir=str(case_dir), include_last_profiler_step=True)
    frame = analysis.t.get_trace(0)  # rank 0, from our distributedInfo
    names = analysis.t.symbol_table.get_sym_table()
    by_name = frame.assign(op=frame["name"].map(lambda i: names[i])).groupby("op")["dur"].agg(["count", "sum"])
    # Each profiled step runs each Linear once: aten::linear appears 2 × STEPS times, gelu STEPS times.
    assert by_name.loc["aten::linear", "count"] == 2 * STEPS
    assert by_name.loc["aten::gelu", "count"] == STEPS
    assert by_name.loc["aten::linear", "sum"] > 0
    assert len(analysis.get_profiler_steps()) == STEPS
    # No CUDA kernels on a CPU trace: the kernel breakdown has nothing to break down (these analyses need a GPU).
    kernel_types, kernels = analysis.get_gpu_kernel_breakdown(visualize=False)
    assert kernel_types.empty and kernels.empty
