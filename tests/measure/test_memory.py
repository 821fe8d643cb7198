"""Isolated memory cases: peaks grow with batch, a cap gives oom and the next case runs, killed children."""

from __future__ import annotations

import os
import signal
import subprocess

import pytest
import torch

from lvmharness.core.parsing import parse_bytes
from lvmharness.core.procfs import status_bytes
from lvmharness.measure.batch_search import max_batch
from lvmharness.measure.memory import MemoryCase, measure_in_process, run_isolated

MiB = 2**20


def test_cpu_peak_rss_grows_with_batch() -> None:
    small = run_isolated(MemoryCase("smoke_resnet", batch_size=1, img_size=160))
    large = run_isolated(MemoryCase("smoke_resnet", batch_size=16, img_size=160))
    assert small.status == large.status == "ok", (small.error, large.error)
    assert large.values()["rss_peak_delta_bytes"] > small.values()["rss_peak_delta_bytes"]
    assert large.values()["rss_peak_bytes"] > small.values()["rss_peak_bytes"]
    # The baseline is taken in the fresh child after imports, before the model exists.
    assert 0 < small.values()["rss_baseline_bytes"] < small.values()["rss_peak_bytes"]
    assert large.provenance()["pid"] != small.provenance()["pid"] != os.getpid()


def test_train_step_breakdown() -> None:
    res = run_isolated(MemoryCase("smoke_vit", batch_size=2, mode="train_step"))
    assert res.status == "ok", res.error
    v = res.values()
    assert v["mem_grads_bytes"] == v["mem_weights_bytes"] == 178_600 * 4
    # AdamW keeps two fp32 moments per parameter plus a step counter per tensor.
    assert 2 * v["mem_weights_bytes"] <= v["mem_optimizer_bytes"] < 2 * v["mem_weights_bytes"] + 4096
    assert v["rss_forward_peak_delta_bytes"] > 0


def test_the_peak_window_starts_after_the_model_is_prepared() -> None:
    """Order of the child's steps: the device is initialised before any statistic is touched, and the peak is
    reset again once the model is built and converted (bf16 here), so the build's freed fp32 blocks and transient
    RSS are not in the case's peak. Under compile the first (compiling) call is also before the window."""
    steps: list[str] = []
    res = measure_in_process(MemoryCase("smoke_vit", dtype="bf16", img_size=32), log=steps.append)
    assert steps == ["init", "reset_peak", "prepared", "reset_peak", "forward"]
    assert res.provenance()["steps"] == steps and res.provenance()["rss_peak_reset"] is True
    steps.clear()
    res = measure_in_process(MemoryCase("smoke_vit", img_size=32, compile_backend="eager"), log=steps.append)
    assert steps == ["init", "reset_peak", "prepared", "compiled", "reset_peak", "forward"]
    assert res.provenance()["execution"]["compile_backend"] == "eager"
    assert res.provenance()["compile"]["graphs_compiled"] >= 1


def test_the_rss_peak_is_of_this_case_not_of_the_process_before_it() -> None:
    """VmHWM is reset to the current RSS when the case starts (clear_refs, Linux >= 4.0): a 512 MiB buffer that
    this process touched and freed before the case must not appear in the case's peak. The smoke model at 32 px
    needs a few MiB, far below the 256 MiB margin."""
    if status_bytes("VmHWM") is None:
        pytest.skip("needs /proc/self/status (Linux)")
    buf = torch.ones(128 * 2**20)  # 128 Mi float32 = 512 MiB, every page written
    del buf
    rss = status_bytes("VmRSS") or 0
    assert (status_bytes("VmHWM") or 0) >= rss + 400 * MiB  # the transient is in the process's high-water mark
    res = measure_in_process(MemoryCase("smoke_vit", img_size=32))
    assert res.values()["rss_peak_bytes"] < rss + 256 * MiB


def test_a_capped_child_ooms_and_the_next_case_succeeds() -> None:
    cap = 256 * MiB
    too_big = run_isolated(MemoryCase("smoke_resnet", batch_size=512, img_size=224, mem_limit_bytes=cap))
    assert too_big.status == "oom"
    assert "allocate" in (too_big.error or "")
    fits = run_isolated(MemoryCase("smoke_resnet", batch_size=2, img_size=224, mem_limit_bytes=cap))
    assert fits.status == "ok", fits.error
    assert fits.values()["rss_peak_delta_bytes"] < cap + 64 * MiB


def test_a_killed_child_is_an_error_result() -> None:
    def kill(proc: subprocess.Popen[str]) -> None:
        os.kill(proc.pid, signal.SIGKILL)

    res = run_isolated(MemoryCase("smoke_vit"), on_spawn=kill)
    assert res.status == "error"
    assert "killed by signal SIGKILL" in (res.error or "")
    after = run_isolated(MemoryCase("smoke_vit"))
    assert after.status == "ok"


def test_a_child_past_its_time_is_killed_and_reported() -> None:
    res = run_isolated(MemoryCase("smoke_vit"), timeout_s=0.05)
    assert res.status == "error" and "exceeded" in (res.error or "")


def test_an_error_inside_the_child_comes_back_as_text() -> None:
    res = run_isolated(MemoryCase("smoke_vit", img_size=36))
    assert res.status == "error" and "multiple of the patch size 8" in (res.error or "")


@pytest.mark.slow  # one child process per probe of the bisection
def test_max_batch_search_under_a_cap() -> None:
    found = max_batch(MemoryCase("smoke_resnet", img_size=448, mem_limit_bytes=160 * MiB), upper=1024)
    assert found["max_batch_size"] >= 1
    assert found["first_oom_batch"] == found["max_batch_size"] + 1
    statuses = dict((b, s) for b, s in found["probes"])
    assert statuses[found["max_batch_size"]] == "ok" and statuses[found["first_oom_batch"]] == "oom"


def test_max_batch_on_cpu_needs_a_cap() -> None:
    with pytest.raises(ValueError, match="needs a memory cap"):
        max_batch(MemoryCase("smoke_vit"))


def test_bad_cases_and_sizes() -> None:
    with pytest.raises(ValueError, match="valid modes"):
        MemoryCase("smoke_vit", mode="training")
    assert parse_bytes("2GiB") == 2 * 2**30 and parse_bytes("512MiB") == 512 * MiB and parse_bytes("1.5GB") == 1.5e9
    for bad in ("lots", "2 parsecs", "0"):
        with pytest.raises(ValueError, match="memory size"):
            parse_bytes(bad)


@pytest.mark.cuda
def test_cuda_child_initialises_before_it_resets_and_empties_the_cache_after_converting() -> None:
    # No cap: nothing else initialises CUDA before the statistics are reset (this case used to crash). In a fresh
    # process, as a memory child runs: in this pytest process earlier tests have already initialised CUDA.
    import json
    import sys

    code = ("import json, torch\n"
            "from lvmharness.measure.memory import MemoryCase, measure_in_process\n"
            "assert not torch.cuda.is_initialized()\n"
            "steps = []\n"
            "res = measure_in_process(MemoryCase('smoke_vit', device='cuda', dtype='bf16', img_size=32), "
            "log=steps.append)\n"
            "print(json.dumps({'steps': steps, 'info': res.provenance()['cuda_mem_get_info_at_start']}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["steps"] == ["init", "empty_cache", "reset_peak", "prepared", "empty_cache", "reset_peak", "forward"]
    assert 0 < out["info"]["free_bytes"] <= out["info"]["total_bytes"]


@pytest.mark.cuda
def test_cuda_bf16_reserved_peak_is_not_inflated_by_the_fp32_build() -> None:
    # ViT-S weights: 22 M params = 88 MB in fp32, 44 MB in bf16. Built in fp32 then converted, the fp32 blocks
    # stay cached unless emptied; with the cache emptied, the bf16 case reserves less than the fp32 one.
    fp32 = run_isolated(MemoryCase("vit_small", device="cuda", dtype="fp32", batch_size=1))
    bf16 = run_isolated(MemoryCase("vit_small", device="cuda", dtype="bf16", batch_size=1))
    assert fp32.status == bf16.status == "ok", (fp32.error, bf16.error)
    assert bf16.values()["mem_reserved_peak_bytes"] < fp32.values()["mem_reserved_peak_bytes"]


@pytest.mark.cuda
def test_cuda_cap_holds_and_its_semantics_are_recorded() -> None:
    res = run_isolated(MemoryCase("smoke_vit", device="cuda", img_size=32, mem_limit_bytes=2**30))
    assert res.status == "ok", res.error
    assert "reserve" in res.provenance()["mem_limit_semantics"]
    # Over the cap: a ViT-S training step at batch 256 needs its 88 MB of fp32 weights, as much again in gradients,
    # twice that in AdamW state, and gigabytes of activations (256 x 197 tokens x 384 channels x 4 bytes = 77 MB per
    # saved tensor, dozens per block): far beyond a 256 MiB cap, which must refuse it as an out-of-memory result.
    over = run_isolated(MemoryCase("vit_small", device="cuda", batch_size=256, mode="train_step",
                                   mem_limit_bytes=256 * 2**20))
    assert over.status == "oom", (over.status, over.error)


@pytest.mark.cuda
def test_cuda_activations_do_not_hold_the_cublas_workspace() -> None:
    # smoke_vit at 32 px, batch 1: 17 tokens x 64 channels x 4 bytes = 4.4 KB per activation, 4x that in the MLP;
    # the whole forward's live set is far below 1 MiB, while a cuBLAS workspace is MiBs (32 MiB on Hopper).
    res = run_isolated(MemoryCase("smoke_vit", device="cuda", img_size=32, batch_size=1))
    assert res.status == "ok", res.error
    assert res.provenance()["cublas_workspace_bytes"] >= 0
    assert 0 < res.values()["mem_activations_peak_bytes"] < 2**20


@pytest.mark.cuda
def test_cuda_allocated_le_reserved_and_training_exceeds_inference() -> None:
    inf = run_isolated(MemoryCase("vit_small", device="cuda", batch_size=32, mode="inference"))
    train = run_isolated(MemoryCase("vit_small", device="cuda", batch_size=32, mode="train_step"))
    assert inf.status == train.status == "ok", (inf.error, train.error)
    for res in (inf, train):
        assert 0 < res.values()["mem_allocated_peak_bytes"] <= res.values()["mem_reserved_peak_bytes"]
    assert train.values()["mem_allocated_peak_bytes"] > inf.values()["mem_allocated_peak_bytes"]
    assert train.values()["mem_activations_peak_bytes"] > inf.values()["mem_activations_peak_bytes"]


def test_the_bench_process_drops_its_cached_model_before_a_memory_child_runs() -> None:
    # A memory child shares the device with the pytest process: the model a latency case left cached there (and,
    # on CUDA, the allocator blocks it held) would shrink what the child can use and move its max batch. Building
    # the memory case is the one way benches reach a child, and it must leave no model alive in this process.
    import gc
    import weakref

    from lvmharness.bench.config import LvmConfig
    from lvmharness.bench.fixture import Lvm
    from lvmharness.bench.session import LvmSession

    session = LvmSession.from_options(LvmConfig(profile="smoke", devices=("cpu",), models=("smoke_vit",)))
    case = session.cases("latency")[0]
    lvm = Lvm(session, case)
    loaded = lvm.model()
    model = weakref.ref(loaded.prepared.model)
    assert lvm.model() is loaded  # the cache a later latency case of the same model would reuse
    del loaded
    gc.collect()
    assert model() is not None, "the session's cache keeps the model alive between cases"

    mem = lvm.memory_case("inference")

    assert model() is None, "the cached model outlived the start of a memory case"
    assert (mem.model, mem.batch_size, mem.img_size, mem.mode) == (case.spec.portable_name, case.batch_size or 1,
                                                                    case.img_size, "inference")
