"""The CUDA paths, shown on the CPU where the mechanism allows: each test here makes the CPU take the branch a GPU
would (torch's own switches forced the way CUDA sets them) and checks the harness follows it."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch.optim import optimizer as torch_optimizer

from lvmharness.bench import parallel
from lvmharness.bench.config import LvmConfig
from lvmharness.bench.session import LvmSession
from lvmharness.core.oom import is_oom
from lvmharness.measure.peak import mac_mix_peak
from lvmharness.measure.prediction import measure_step, predict_step
from lvmharness.measure.step import StepConfig


@pytest.fixture
def cpu_as_foreach_device(monkeypatch: pytest.MonkeyPatch) -> None:
    """torch's default optimizer choice as on CUDA: real parameters on the CPU take the multi-tensor kernels
    (``_default_to_fused_or_foreach`` reads this list; fake parameters still fail its type test)."""
    supported = torch_optimizer._get_foreach_kernels_supported_devices
    monkeypatch.setattr(torch_optimizer, "_get_foreach_kernels_supported_devices", lambda: [*supported(), "cpu"])


@pytest.mark.parametrize(("model", "size"), [("smoke_vit", 32), ("smoke_resnet", 64)])
def test_train_prediction_models_the_foreach_optimizer_that_runs(model: str, size: int,
                                                                 cpu_as_foreach_device: None) -> None:
    # AdamW peaks in its step at batch 1; the multi-tensor AdamW holds a weights-sized list of temporaries
    # (torch/optim/adamw.py, _foreach_sqrt of every second moment at once) where the single-tensor one holds one
    # parameter's worth. The prediction must model the path the measured step takes: same peak, same kernels.
    cfg = StepConfig(model, batch_size=1, img_size=size, mode="train", optimizer="adamw")
    predicted = predict_step(cfg)
    measured = measure_step(cfg)
    assert measured.extra["optimizer_foreach"] is True  # what torch's default picked for real parameters
    assert predicted.extra["optimizer_foreach"] is True
    assert predicted.peak_phase == measured.peak_phase == "optimizer_step"
    assert predicted.peak_bytes == measured.peak_bytes


def test_foreach_adamw_costs_more_than_single_tensor_in_the_prediction(monkeypatch: pytest.MonkeyPatch) -> None:
    # The two paths are told apart (the test above would pass vacuously if they peaked alike).
    cfg = StepConfig("smoke_vit", batch_size=1, img_size=32, mode="train", optimizer="adamw")
    single = predict_step(cfg)
    supported = torch_optimizer._get_foreach_kernels_supported_devices
    monkeypatch.setattr(torch_optimizer, "_get_foreach_kernels_supported_devices", lambda: [*supported(), "cpu"])
    foreach = predict_step(cfg)
    assert single.extra["optimizer_foreach"] is False and foreach.extra["optimizer_foreach"] is True
    assert foreach.peak_bytes > single.peak_bytes


# --- xdist: pin and refuse only for lvm cases on the device ----------------------------------------------------------


def _fake_config(workers: int, args: tuple[str, ...] = ()) -> Any:
    return SimpleNamespace(
        option=SimpleNamespace(dist="load", tx=["popen"] * workers),
        invocation_params=SimpleNamespace(args=args),
        pluginmanager=SimpleNamespace(hasplugin=lambda name: name == "xdist"),
        stash=pytest.Stash(),
    )


def _nodes(config: Any, workers: int) -> list[Any]:
    nodes = [SimpleNamespace(config=config, gateway=SimpleNamespace(id=f"gw{i}"), workerinput={"workerid": f"gw{i}"})
             for i in range(workers)]
    for node in nodes:
        parallel.configure_node(node)
    return nodes


def test_more_workers_than_gpus_is_refused_only_when_lvm_cases_run_on_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    # A GPU machine as the controller sees it (one GPU given, index 7), the plugin's devices not named on the
    # command line: a plain `pytest -n 2` of a project with lvmharness installed (where "auto" would be CUDA).
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "7")
    monkeypatch.setattr(parallel, "_usable_cores", lambda: [0, 1])
    config = _fake_config(2)
    parallel.configure_controller(config, LvmSession.from_options(LvmConfig(devices=("cuda", "cpu"))))
    nodes = _nodes(config, 2)
    assert [n.workerinput.get(parallel.CUDA) for n in nodes] == ["7", None]  # the second keeps the controller's view
    parallel.refuse_collected(config, ["tests/test_x.py::test_a", "tests/test_x.py::test_b[cpu-3]"])  # runs
    with pytest.raises(pytest.exit.Exception, match="needs one GPU per worker, and this run was given 1"):
        parallel.refuse_collected(config, ["benches/bench_latency.py::bench_forward_latency[vit-cuda0-bf16-b1-224]"])
    # CPU cases of the same run are fine: two workers, two cores.
    parallel.refuse_collected(config, ["benches/bench_latency.py::bench_forward_latency[vit-cpu-fp32-b1-224]"])
    # Named on the command line, CUDA cases are the point of the run: refused before any worker starts.
    with pytest.raises(pytest.UsageError, match="needs one GPU per worker"):
        parallel.configure_controller(_fake_config(2, ("--lvm-device", "cuda")),
                                      LvmSession.from_options(LvmConfig(devices=("cuda",))))


@pytest.mark.slow
def test_plain_xdist_run_with_lvmharness_installed_is_not_refused(tmp_path: Path) -> None:
    # More workers than cores and one (fake) GPU index: neither matters to a session without lvm cases.
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert 1 + 1 == 2\n\n\n"
                                            "def test_two():\n    assert 'a'.upper() == 'A'\n")
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "7"}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-n", str(cores + 1), "-q"],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "2 passed" in proc.stdout


def test_pinning_after_the_cuda_runtime_enumerated_the_gpus_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    # torch.cuda.is_available() before the worker pins leaves torch uninitialised, yet the runtime keeps the device
    # list it enumerated: after setting CUDA_VISIBLE_DEVICES=5 it still reports both GPUs. Simulated here by the
    # count the runtime answers; the cuda-marked test below does it for real in a fresh process.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    monkeypatch.setattr(parallel, "_runtime_device_count", lambda: 2)
    worker = SimpleNamespace(workerinput={"workerid": "gw1", parallel.CUDA: "5", parallel.CUDA_GIVEN: "3,5"},
                             option=SimpleNamespace(), addinivalue_line=lambda *a: None)
    with pytest.raises(pytest.UsageError, match="still sees 2 GPUs"):
        parallel.configure_worker(worker, LvmSession.from_options(LvmConfig(devices=("cuda",))))  # type: ignore[arg-type]
    monkeypatch.setattr(parallel, "_runtime_device_count", lambda: 1)  # pinned in time: one GPU seen
    facts = parallel.configure_worker(worker, LvmSession.from_options(LvmConfig(devices=("cuda",))))  # type: ignore[arg-type]
    assert facts["cuda_visible_devices"] == "5"


# --- MFU's denominator: the peak of the kernels that carry the model's MACs -------------------------------------------

# Probe results as an H200 in fp32 would give them by default: GEMMs in true fp32 (matmul TF32 off) near the
# 67 TFLOP/s fp32 rate of the datasheet, convolutions on TF32 tensor cores (cuDNN TF32 on) several times faster.
H200_FP32_PROBES: dict[str, Any] = {
    "flops_per_s": 400e12, "source": "measured", "theoretical_flops_per_s": None,
    "probes": [{"name": "torch.mm 4096x4096 @ 4096x4096", "flops_per_s": 55e12},
               {"name": "torch.mm 8192x8192 @ 8192x8192", "flops_per_s": 60e12},
               {"name": "conv2d 3x3 (64, 256, 56, 56) -> 256", "flops_per_s": 400e12},
               {"name": "conv2d 1x1 (64, 256, 56, 56) -> 256", "flops_per_s": 300e12}],
}


def test_mfu_denominator_of_a_transformer_is_the_matmul_peak() -> None:
    # ViT-B/16 at 224 px: 17.58 G MACs (DeiT paper, Table 1: "17.6 GFLOPs", which are MACs), of which the patch
    # embedding, a 16x16 stride-16 convolution, is 196 patches x 768 out x 768 in (3·16·16) MACs.
    conv = 196 * 768 * 768
    by_op = {"aten.convolution": conv, "aten.addmm": 17_580_000_000 - conv - 1_000_000, "aten.bmm": 1_000_000}
    peak, why = mac_mix_peak(H200_FP32_PROBES, by_op)
    total = sum(by_op.values())
    expected = total / (conv / 400e12 + (total - conv) / 60e12)  # weighted harmonic mean, best probe per kind
    assert peak == pytest.approx(expected)
    assert peak == pytest.approx(60e12, rel=0.01)  # held against the fp32 GEMM rate, not the TF32 conv rate
    assert why["peak_flops_per_s_by_kind"] == {"matmul": 60e12, "conv": 400e12}
    assert why["macs_share_by_kind"]["conv"] == pytest.approx(conv / total)


def test_mfu_denominator_of_a_cnn_is_the_conv_peak() -> None:
    # ResNet-50 at 224 px: 4.09 G MACs (torchvision's model table: 4.09 GFLOPS, i.e. MACs); the classifier is a
    # 2048 -> 1000 linear layer, 2,048,000 MACs; the rest are convolutions.
    fc = 2048 * 1000
    by_op = {"aten.convolution": 4_090_000_000 - fc, "aten.addmm": fc}
    peak, _ = mac_mix_peak(H200_FP32_PROBES, by_op)
    expected = 4_090_000_000 / ((4_090_000_000 - fc) / 400e12 + fc / 60e12)
    assert peak == pytest.approx(expected)
    assert 395e12 < peak < 400e12


def test_mfu_denominator_on_a_cpu_keeps_the_theoretical_bound_and_falls_back_without_a_breakdown() -> None:
    cpu = {"flops_per_s": 300e9, "source": "theoretical", "theoretical_flops_per_s": 300e9,
           "probes": [{"name": "torch.mm 1024x1024 @ 1024x1024", "flops_per_s": 90e9},
                      {"name": "conv2d 3x3 (8, 256, 56, 56) -> 256", "flops_per_s": 120e9}]}
    assert mac_mix_peak(cpu, {"aten.addmm": 10, "aten.convolution": 10})[0] == pytest.approx(300e9)
    assert mac_mix_peak(cpu, {})[0] == 300e9
    no_conv_probe = {**H200_FP32_PROBES, "probes": H200_FP32_PROBES["probes"][:2]}
    assert mac_mix_peak(no_conv_probe, {"aten.convolution": 5})[0] == 400e12  # nothing to weigh: the device peak


# --- risks: allocation failures of CUDA libraries are out-of-memory results -------------------------------------------


@pytest.mark.parametrize(("message", "oom"), [
    ("CUDA error: CUBLAS_STATUS_ALLOC_FAILED when calling `cublasCreate(handle)`", True),
    ("cuDNN error: CUDNN_STATUS_ALLOC_FAILED", True),
    ("cuDNN error: CUDNN_STATUS_NOT_ENOUGH_WORKSPACE", True),
    ("cuFFT error: CUFFT_ALLOC_FAILED", True),
    ("CUDA error: CUBLAS_STATUS_EXECUTION_FAILED when calling `cublasSgemm( handle, ...)`", False),
    ("cuDNN error: CUDNN_STATUS_BAD_PARAM", False),
])
def test_cuda_library_allocation_failures_are_oom(message: str, oom: bool) -> None:
    # torch raises these as a plain RuntimeError (not torch.OutOfMemoryError) when the caching allocator left the
    # library no memory for its handle or workspace: the case ran out of memory, it did not fail.
    assert is_oom(RuntimeError(message)) is oom


# --- risks: a largest-batch search on CUDA stops near what the free memory can hold ----------------------------------


def test_max_batch_search_is_bounded_by_the_predicted_batch_for_the_budget() -> None:
    from lvmharness.measure.batch_search import HEADROOM, search_upper
    from lvmharness.measure.memory import MemoryCase
    from lvmharness.measure.prediction import predict_step

    case = MemoryCase("smoke_vit", device="cpu", img_size=32, mode="inference")
    # A budget of exactly the predicted peak at batch 10: the predicted largest batch is 10, the bound twice that.
    budget = predict_step(StepConfig("smoke_vit", batch_size=10, img_size=32, mode="inference")).peak_bytes
    upper, why = search_upper(case, budget)
    assert why["predicted_max_batch"] == 10 and upper == HEADROOM * 10
    # Without a budget on a device that has none to read, and for a compiled step, the search keeps its default.
    assert search_upper(case)[0] == 4096
    compiled = MemoryCase("smoke_vit", device="cpu", img_size=32, compile_backend="inductor")
    assert search_upper(compiled, budget)[0] == 4096


@pytest.mark.cuda
def test_cuda_max_batch_search_stops_below_the_default_bound() -> None:
    from lvmharness.measure.batch_search import search_upper
    from lvmharness.measure.memory import MemoryCase

    upper, why = search_upper(MemoryCase("vit_small", device="cuda", mode="inference"))
    # The free memory was read from the device, and the bound is the predicted batch's double (capped at 4096).
    assert 0 < why["budget_bytes"] <= torch.cuda.mem_get_info(0)[1]
    assert why["predicted_max_batch"] >= 1 and upper == min(4096, 2 * why["predicted_max_batch"])


# --- risks: a bf16 memory case on CUDA keeps no fp32 segments in its reserved peak ------------------------------------


def test_a_16_bit_cuda_memory_case_builds_its_fp32_model_on_the_cpu() -> None:
    # No CUDA needed: the decision. The cuda-marked test_cuda_bf16_reserved_peak_is_not_inflated_by_the_fp32_build
    # (tests/measure/test_memory.py) decides whether the reserved peak then holds the bf16 model only.
    from lvmharness.measure.memory import build_device

    cuda = torch.device("cuda", 0)
    assert build_device(cuda, "bf16") == torch.device("cpu") and build_device(cuda, "fp16") == torch.device("cpu")
    assert build_device(cuda, "fp32") == cuda and build_device(cuda, "amp_bf16") == cuda  # fp32 weights
    assert build_device(torch.device("cpu"), "bf16") == torch.device("cpu")


@pytest.mark.cuda
def test_late_cuda_pin_is_refused_in_a_fresh_worker_process() -> None:
    # torch.cuda.is_available() before the pin: the runtime has enumerated every GPU, and the pin cannot work.
    if torch.cuda.device_count() < 2:
        pytest.skip("needs 2 GPUs: with one, a late pin changes nothing")
    code = ("import torch, pytest\\n"
            "from types import SimpleNamespace\\n"
            "from lvmharness.bench import parallel\\n"
            "from lvmharness.bench.config import LvmConfig\\n"
            "from lvmharness.bench.session import LvmSession\\n"
            "torch.cuda.is_available()\\n"
            "wi = {'workerid': 'gw1', parallel.CUDA: '1', parallel.CUDA_GIVEN: 'all:2'}\\n"
            "w = SimpleNamespace(workerinput=wi, option=SimpleNamespace(), addinivalue_line=lambda *a: None)\\n"
            "try:\\n"
            "    parallel.configure_worker(w, LvmSession.from_options(LvmConfig(devices=('cuda',))))\\n"
            "except pytest.UsageError as e:\\n"
            "    print('REFUSED', e)\\n")
    env = {k: v for k, v in __import__("os").environ.items() if k != "CUDA_VISIBLE_DEVICES"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert "REFUSED" in proc.stdout and "still sees" in proc.stdout, proc.stdout + proc.stderr


# --- risks: NVML lists host PIDs; in a container this process must not count as another -------------------------------


def test_nvml_host_pids_in_a_container_do_not_make_this_process_another() -> None:
    from lvmharness.measure.contention import others_than_me

    gib = 2**30
    # Outside a container: our own pid is listed and dropped.
    assert others_than_me([{"pid": 10, "used_memory_bytes": gib}], 10, gib) == ([], None)
    # In a container (our pid 7 is 48213 on the host): the one entry is us, not a competitor.
    alone, note = others_than_me([{"pid": 48213, "used_memory_bytes": gib + 500 * 2**20}], 7, gib)
    assert alone == [] and note is not None and "48213" in note and "PID namespace" in note
    # ...and a real competitor next to us is still one: the entry nearest our reserved bytes is us.
    other = {"pid": 50000, "used_memory_bytes": 20 * gib}
    rest, _ = others_than_me([{"pid": 48213, "used_memory_bytes": gib + 400 * 2**20}, other], 7, gib)
    assert rest == [other]
    # A process that has not initialised CUDA has no context on the device: everything listed is someone else.
    assert others_than_me([other], 7, None) == ([other], None)


# --- risks: a NaN on one DDP rank stops every rank -------------------------------------------------------------------

_RANKS_SCRIPT = """
import sys, torch, torch.distributed as dist
from torch import nn
from lvmharness.train import distributed
from lvmharness.train.loop import NonFiniteLossError, train_one_epoch

d = distributed.from_env()
dist.init_process_group("gloo")
torch.manual_seed(0)
net = nn.Linear(4, 3)
batches = [(torch.randn(2, 4), torch.tensor([0, 1])) for _ in range(4)]
if d.rank == 1:
    batches[1] = (torch.full((2, 4), float("nan")), torch.tensor([0, 1]))  # rank 1's second batch only
try:
    train_one_epoch(net, batches, torch.optim.SGD(net.parameters(), lr=0.1), nn.CrossEntropyLoss(),
                    device=torch.device("cpu"), epoch=0, dist=d)
    print(f"RANK {d.rank} FINISHED", flush=True)
except NonFiniteLossError as exc:
    print(f"RANK {d.rank} NONFINITE {exc}", flush=True)
finally:
    dist.destroy_process_group()
"""


@pytest.mark.slow  # one torchrun launch of two processes
def test_a_nan_on_one_rank_stops_every_rank(tmp_path: Path) -> None:
    import os
    import signal

    script = tmp_path / "ranks.py"
    script.write_text(_RANKS_SCRIPT)
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                             str(script)], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=180)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"the ranks hung:\n{out[-3000:]}")
    # Both ranks stop at the same step with the same error, rank 0 although its own loss stayed finite.
    assert "RANK 0 NONFINITE" in out and "RANK 1 NONFINITE" in out, out[-3000:]
    assert out.count("step 2 (non-finite on at least one of 2 ranks") == 2
