"""The loop's numbers: exact resume, the learning-rate schedule, learning itself, steady-state throughput and
accuracy counting, each against a value derived in the test."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from lvmharness.models.build import create_model
from lvmharness.train import EpochStats, SteadyState, TrainConfig, evaluate, load_checkpoint, train
from lvmharness.train.checkpoint import restore, rng_state
from lvmharness.train.run import build_optimizer
from lvmharness.train.sinks import Sink
from tests.helpers.datasets import write_cifar100


class Killed(Exception):
    pass


class KillAfter(Sink):
    """Stops the run right after an epoch's checkpoint is written, as a SIGKILL between epochs would."""

    def __init__(self, epoch: int) -> None:
        self.epoch = epoch

    def epoch_end(self, run: Any, stats: EpochStats, row: dict[str, Any]) -> None:
        if stats.epoch == self.epoch:
            raise Killed


@pytest.mark.parametrize("workers", [0, 2])
def test_a_killed_and_resumed_run_repeats_the_uninterrupted_losses_bitwise(tmp_path: Path, workers: int) -> None:
    # CIFAR-100 pickles: random crops and flips, so augmentation randomness (the training process's generator
    # with 0 workers, the workers' seeds with 2) must be replayed too, not only the order.
    write_cifar100(tmp_path / "data", train=48, test=8)

    def cfg(out: str, **kw: Any) -> TrainConfig:
        return TrainConfig(model="smoke_vit", phase=2, device="cpu", workers=workers, batch_size=8, epochs=3,
                           data_dir=str(tmp_path / "data"), max_eval_steps=1, output_dir=str(tmp_path / out),
                           results_dir=str(tmp_path / "res"), **kw)

    train(cfg("whole"))
    with pytest.raises(Killed):
        train(cfg("killed"), extra_sinks=[KillAfter(1)])
    assert load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["epoch"] == 1
    train(cfg("killed", resume=str(tmp_path / "killed" / "checkpoint.pt")))

    whole = load_checkpoint(tmp_path / "whole" / "checkpoint.pt")["history"]
    resumed = load_checkpoint(tmp_path / "killed" / "checkpoint.pt")["history"]
    assert [h["epoch"] for h in resumed] == [1, 2, 3]
    assert len({h["loss"] for h in whole}) == 3  # the epochs differ, so equality below is not trivial
    assert [(h["loss"], h["top1"]) for h in resumed] == [(h["loss"], h["top1"]) for h in whole]


def test_resuming_an_fp32_checkpoint_into_a_run_with_loss_scaling(tmp_path: Path) -> None:
    model = create_model("smoke_vit", num_classes=4)
    optimizer, scheduler = build_optimizer(model, lr=1e-3, weight_decay=0.0, warmup_steps=0, total_steps=4)
    disabled = torch.amp.GradScaler("cpu", enabled=False)
    ckpt = {"model": model.state_dict(), "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
            "scaler": disabled.state_dict(), "rng": rng_state(torch.device("cpu"))}
    assert ckpt["scaler"] == {}
    enabled = torch.amp.GradScaler("cpu", enabled=True)
    with pytest.raises(RuntimeError, match="empty"):  # what torch does with it
        enabled.load_state_dict({})
    restore(ckpt, tmp_path / "c.pt", model=model, optimizer=optimizer, scheduler=scheduler, scaler=enabled,
            device=torch.device("cpu"))
    assert enabled.get_scale() == 2.0**16  # a fresh scaler's initial scale (torch.amp.GradScaler's init_scale)


def test_the_learning_rate_follows_linear_warmup_then_cosine() -> None:
    peak, warmup, total = 1e-3, 4, 20
    model = nn.Linear(2, 2)
    optimizer, scheduler = build_optimizer(model, lr=peak, weight_decay=0.0, warmup_steps=warmup,
                                           total_steps=total)
    seen = []
    for _ in range(total + 1):
        seen.append(optimizer.param_groups[0]["lr"])  # the rate the next step uses
        optimizer.step()
        scheduler.step()
    # By hand: warm-up step t (0-based) uses peak * (t + 1) / warmup (Goyal et al. 2017); afterwards
    # peak * (1 + cos(pi * (t - warmup) / (total - warmup))) / 2 (SGDR without restarts): peak at t = 4, half of
    # it at the midpoint t = 12 (cos(pi/2) = 0), zero at t = 20, and at t = 8 (a quarter) (1 + 1/sqrt(2)) / 2.
    expected = {0: 0.25e-3, 1: 0.5e-3, 3: 1e-3, 4: 1e-3, 8: peak * (1 + 2**-0.5) / 2, 12: 0.5e-3, 20: 0.0}
    for step, lr in expected.items():
        assert seen[step] == pytest.approx(lr, abs=1e-15), step


def test_training_learns_the_synthetic_classes(tmp_path: Path) -> None:
    # 4 classes, 16 validation images (synthetic_size // 4): guessing gets each right with p = 1/4, so the chance
    # of >= 12 right (75%) is the binomial tail below, about 4e-5: reaching it means the model learnt the classes.
    tail = sum(math.comb(16, k) * 0.25**k * 0.75 ** (16 - k) for k in range(12, 17))
    assert tail < 1e-4
    summary = train(TrainConfig(model="smoke_vit", img_size=32, device="cpu", workers=0, dataset="synthetic",
                                synthetic_size=64, synthetic_classes=4, batch_size=8, epochs=2, lr=2e-3,
                                warmup_epochs=0.0, output_dir=str(tmp_path / "o"), results_dir=str(tmp_path / "r")))
    history = load_checkpoint(tmp_path / "o" / "checkpoint.pt")["history"]
    assert summary["top1"] >= 75.0, history
    assert history[-1]["loss"] < history[0]["loss"]
    # The loop steps the schedule: 8 steps per epoch of 16 in all, no warm-up, so after epoch 1 the rate is
    # 2e-3 * (1 + cos(pi * 8 / 16)) / 2 = 1e-3 and after epoch 2 it is 2e-3 * (1 + cos(pi)) / 2 = 0.
    assert [h["lr"] for h in history] == [pytest.approx(1e-3), pytest.approx(0.0, abs=1e-18)]


def test_steady_state_throughput_leaves_the_first_steps_out() -> None:
    # Batch 8; a 5 s first step, a 0.9 s second, then ~0.7 s: median of the five steady steps is 700 ms, so
    # 8 images / 0.7 s = 11.428... img/s, whereas the bounded epoch's rate is 56 images / 9.4 s = 5.96 img/s.
    steps = (5000.0, 900.0, 700.0, 710.0, 690.0, 705.0, 695.0)
    s = SteadyState(steps, 8, warmup=2)
    assert s.values()["throughput_img_s"] == pytest.approx(8 / 0.7)
    assert s.values()["first_step_ms"] == 5000.0 and s.values()["step_ms_p50"] == 700.0
    # Quartiles of 690, 695, 700, 705, 710 (linear interpolation): 695 and 705, IQR/median = 10/700 < 10%.
    assert s.values()["step_ms_iqr"] == pytest.approx(10.0)
    assert s.provenance() == {"warmup_steps": 2, "steady_steps": 5, "iqr_rel": pytest.approx(10 / 700),
                              "high_variance": False}
    assert SteadyState(steps[:5], 8, warmup=2).provenance()["high_variance"]  # 3 steady steps: too few to judge
    assert SteadyState(steps[:2], 8, warmup=2).values()["throughput_img_s"] is None


class FixedLogits(nn.Module):
    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.logits[x[:, 0].long()]  # row i for input i


def test_evaluate_counts_top1_and_top5() -> None:
    # 4 samples over 7 classes, label 0 each. Sample 0 ranks class 0 first (top-1 and top-5 hit), sample 1 third
    # (top-5 only), sample 2 sixth (neither), sample 3 fifth (top-5 only): top-1 1/4 = 25%, top-5 3/4 = 75%.
    ranks = [0, 2, 5, 4]
    logits = torch.zeros(4, 7)
    for i, r in enumerate(ranks):
        order = list(range(1, 7))
        order.insert(r, 0)  # class 0 at position r
        for pos, c in enumerate(order):
            logits[i, c] = 10.0 - pos
    data = [(torch.arange(4, dtype=torch.float32)[:, None], torch.zeros(4, dtype=torch.int64))]
    ev = evaluate(FixedLogits(logits), data, device=torch.device("cpu"))
    assert (ev.top1, ev.top5, ev.images) == (25.0, 75.0, 4)
    assert math.isfinite(ev.seconds)


class ScalarReads(TorchDispatchMode):
    """Counts reads of a tensor's value back to Python (``float(t)``, ``int(t)``, ``bool(t)``, ``t.item()`` all
    dispatch ``aten._local_scalar_dense``): each one waits for the device on CUDA."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        if func is torch.ops.aten._local_scalar_dense.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def test_evaluation_reads_nothing_back_per_batch() -> None:
    model = nn.Sequential(nn.Flatten(), nn.Linear(12, 5))
    batches = [(torch.randn(4, 3, 2, 2), torch.randint(0, 5, (4,))) for _ in range(6)]
    with ScalarReads() as reads:
        ev = evaluate(model, batches, device=torch.device("cpu"))
    # Counting on the device and reading once at the end: no read per batch (two per batch before: 12 here).
    assert reads.count == 0 and ev.images == 24


def test_building_a_run_leaves_the_global_seed_alone(tmp_path: Path) -> None:
    from lvmharness.train import build_run

    torch.manual_seed(987_654)
    build_run(TrainConfig(model="smoke_vit", device="cpu", workers=0, batch_size=4, dataset="synthetic",
                          synthetic_size=8, synthetic_classes=4, seed=0, output_dir=str(tmp_path / "o")),
              device=torch.device("cpu"))
    assert torch.initial_seed() == 987_654  # drawn from, never re-seeded (manual_seed would change this)


@pytest.mark.cuda
def test_the_generator_of_the_device_in_use_is_saved_and_restored() -> None:
    from lvmharness.train.checkpoint import set_rng_state

    device = torch.device("cuda", torch.cuda.device_count() - 1)
    state = rng_state(device)
    assert state["device"]["type"] == "cuda"
    first = torch.rand(4, device=device)
    set_rng_state(state, device)
    assert torch.equal(torch.rand(4, device=device), first)
    # A file from a machine with more GPUs (the old all-devices list) restores this device's entry only.
    legacy = {k: v for k, v in state.items() if k != "device"}
    legacy["cuda"] = [torch.cuda.get_rng_state(device)] * (device.index + 3)
    set_rng_state(legacy, device)


@pytest.mark.cuda
def test_amp_fp16_training_runs_fp16_with_a_gradient_scaler(tmp_path: Path) -> None:
    from lvmharness.train import build_run

    cfg = TrainConfig(model="smoke_vit", device="cuda", workers=0, batch_size=4, dataset="synthetic", epochs=1,
                      synthetic_size=16, synthetic_classes=4, amp="fp16", output_dir=str(tmp_path / "o"),
                      results_dir=str(tmp_path / "r"), max_eval_steps=1)
    run = build_run(cfg, device=torch.device("cuda"))
    assert (run.amp_dtype, run.dtype_name, run.scaler.is_enabled()) == (torch.float16, "amp_fp16", True)
    # The activations of a training step are fp16: every Linear's output, seen by a forward hook, with the
    # weights still fp32 (autocast casts per op; the master weights stay fp32).
    from lvmharness.train.loop import train_step

    seen: list[torch.dtype] = []
    hooks = [m.register_forward_hook(lambda _m, _i, out: seen.append(out.dtype))
             for m in run.model.modules() if isinstance(m, nn.Linear)]
    x = torch.randn(4, 3, run.img_size, run.img_size, device="cuda")
    y = torch.randint(0, 4, (4,), device="cuda")
    try:
        train_step(run.net, x, y, run.optimizer, run.criterion, scaler=run.scaler, amp_dtype=run.amp_dtype)
    finally:
        for h in hooks:
            h.remove()
    assert seen and set(seen) == {torch.float16}
    assert all(p.dtype == torch.float32 for p in run.model.parameters())
    summary = train(cfg)
    assert summary["epochs"] == 1
    resumed = train(TrainConfig(**{**cfg.__dict__, "epochs": 2, "resume": str(tmp_path / "o" / "checkpoint.pt")}))
    assert resumed["epochs"] == 2
