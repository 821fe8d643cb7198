"""Training end to end on tiny models and tiny datasets written in their real formats."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

from lvmharness.commands.train import main
from lvmharness.runtime import data as datamod
from lvmharness.store.loading import load_records
from lvmharness.store.record_schema import record_schema
from lvmharness.train import (
    CheckpointError,
    NonFiniteLossError,
    TrainConfig,
    build_run,
    fit,
    load_checkpoint,
    load_init_weights,
    save_checkpoint,
    train,
)
from lvmharness.train.sinks import default_sinks
from tests.helpers.datasets import write_cifar100, write_imagefolder

ROOT = Path(__file__).resolve().parents[2]
COMMON = ["--model", "smoke_vit", "--device", "cpu", "--workers", "0", "--batch_size", "4"]


def _records(results: Path) -> list[dict[str, Any]]:
    runs = sorted(p for p in results.iterdir() if p.is_dir())
    out: list[dict[str, Any]] = []
    for run in runs:
        out += load_records(run)
    validator = jsonschema.Draft202012Validator(record_schema())
    for rec in out:
        validator.validate(rec)
    return out


def test_phase1_imagefolder_then_phase2_cifar100_from_the_checkpoint(tmp_path: Path) -> None:
    data = tmp_path / "data"
    write_imagefolder(data, classes=3, per_class=8, val_per_class=4)
    write_cifar100(data, train=48, test=20)
    res, out1, out2 = tmp_path / "results", tmp_path / "p1", tmp_path / "p2"

    rc = main([*COMMON, "--phase", "1", "--data_dir", str(data), "--epochs", "2", "--output_dir", str(out1),
               "--results_dir", str(res)])
    assert rc == 0
    ck1 = load_checkpoint(out1 / "checkpoint.pt")
    assert (ck1["epoch"], ck1["num_classes"], ck1["model_name"]) == (2, 3, "vit_tiny_patch16_224")
    assert {"optimizer", "scheduler", "scaler", "rng", "history"} <= set(ck1)
    assert (out1 / "tb").is_dir() and any((out1 / "tb").iterdir())

    # Phase 2 builds the model for CIFAR-100's 100 classes and loads everything but the head.
    cfg = TrainConfig(model="smoke_vit", phase=2, data_dir=str(data), epochs=1, batch_size=4, workers=0,
                      device="cpu", output_dir=str(out2), results_dir=str(res),
                      init_checkpoint=str(out1 / "checkpoint.pt"))
    run = build_run(cfg, device=torch.device("cpu"))
    assert run.splits.name == "cifar100" and run.splits.num_classes == 100
    assert run.init_info["head_replaced"] and run.init_info["head_keys"] == ["head.weight", "head.bias"]
    state = run.model.state_dict()
    assert state["head.weight"].shape == (100, 64) and ck1["model"]["head.weight"].shape == (3, 64)
    for key, value in ck1["model"].items():
        if not key.startswith("head."):
            assert torch.equal(state[key], value), key
    summary = fit(run, default_sinks(run))
    assert summary["epochs"] == 1 and summary["num_classes"] == 100

    ck2 = load_checkpoint(out2 / "checkpoint.pt")
    assert ck2["num_classes"] == 100 and ck2["model"]["head.weight"].shape == (100, 64)
    records = _records(res)
    epochs = [r for r in records if r["metric"] == "train_epoch"]
    assert [(r["phase"], r["options"]["dataset"], r["values"]["epoch"]) for r in epochs] == [
        ("train", "imagenet", 1), ("train", "imagenet", 2), ("finetune", "cifar100", 1)]
    for r in epochs:
        v = r["values"]
        assert v["epoch_s"] > 0 and v["data_wait_s"] >= 0 and v["compute_s"] > 0
        assert v["data_wait_s"] + v["compute_s"] <= v["epoch_s"] * 1.01
        assert 0 <= v["top1"] <= v["top5"] <= 100 and v["throughput_img_s"] > 0
        assert len(v["samples"]) == v["steps"]
    results = [r for r in records if r["metric"] == "train_result"]
    assert len(results) == 2
    assert results[1]["values"]["gmacs"] > 0 and results[1]["values"]["params"] > 0
    assert results[1]["values"]["top1"] == epochs[-1]["values"]["top1"]


def test_the_flat_imagenet_layout(tmp_path: Path) -> None:
    write_imagefolder(tmp_path, classes=2, per_class=3, val_per_class=2, flat=True)
    splits = datamod.build("imagenet", data_dir=tmp_path, img_size=32)
    assert splits.num_classes == 2 and len(splits.train) == 6  # type: ignore[arg-type]
    x, y = splits.train[5]
    assert x.shape == (3, 32, 32) and y == 1


@pytest.mark.parametrize(("phase", "expected"), [("1", "imagenet/{train,val}/<wnid>/*.JPEG"),
                                                 ("2", "cifar-100-python/{train,test,meta}")])
def test_a_missing_dataset_is_a_clear_error(tmp_path: Path, phase: str, expected: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    rc = main([*COMMON, "--phase", phase, "--data_dir", str(tmp_path / "nothing"), "--output_dir",
               str(tmp_path / "out"), "--results_dir", str(tmp_path / "res")])
    err = capsys.readouterr().err
    assert rc == 2
    assert expected in err and "--dataset synthetic" in err and str(tmp_path / "nothing") in err
    assert not (tmp_path / "out").exists()


def _synthetic_args(tmp_path: Path, *extra: str) -> list[str]:
    return [*COMMON, "--dataset", "synthetic", "--synthetic_size", "32", "--synthetic_classes", "4",
            "--output_dir", str(tmp_path / "out"), "--results_dir", str(tmp_path / "res"), *extra]


def test_a_corrupt_checkpoint_is_a_clear_error_and_stays_as_it_is(tmp_path: Path,
                                                                 capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "checkpoint.pt"
    bad.write_bytes(b"PK\x03\x04 truncated zip")
    rc = main(_synthetic_args(tmp_path, "--resume", str(bad)))
    assert rc == 2
    assert "corrupt" in capsys.readouterr().err
    assert bad.read_bytes() == b"PK\x03\x04 truncated zip"
    with pytest.raises(CheckpointError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.pt")
    torch.save({"weights": torch.ones(1)}, tmp_path / "foreign.pt")
    with pytest.raises(CheckpointError, match="not an lvmharness training checkpoint"):
        load_checkpoint(tmp_path / "foreign.pt")


class Poisonable(datamod.SyntheticImages):
    poison = False

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x, y = super().__getitem__(index)
        return (torch.full_like(x, float("nan")) if self.poison else x), y


def test_a_nan_loss_stops_with_a_clear_message_and_keeps_the_last_good_checkpoint(tmp_path: Path) -> None:
    splits = datamod.DataSplits(Poisonable(32, 4, 32), datamod.SyntheticImages(8, 4, 32, 1), 4, "synthetic", "test")
    base = dict(model="smoke_vit", dataset="synthetic", batch_size=4, workers=0, device="cpu",
                output_dir=str(tmp_path / "out"), results_dir=str(tmp_path / "res"))
    train(TrainConfig(epochs=1, **base), splits=splits)  # type: ignore[arg-type]
    ckpt = tmp_path / "out" / "checkpoint.pt"
    before = ckpt.read_bytes()
    Poisonable.poison = True
    try:
        with pytest.raises(NonFiniteLossError, match=r"loss became nan at epoch 2, step 1.*checkpoint.pt \(epoch 1\)"):
            train(TrainConfig(epochs=2, resume=str(ckpt), **base), splits=splits)  # type: ignore[arg-type]
    finally:
        Poisonable.poison = False
    assert ckpt.read_bytes() == before
    assert load_checkpoint(ckpt)["epoch"] == 1


def test_checkpoint_writes_are_atomic(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.pt"
    save_checkpoint(path, {"format": "x", "a": torch.ones(2)})
    with pytest.raises(Exception):  # noqa: B017 - pickling a lambda fails inside torch.save
        save_checkpoint(path, {"bad": lambda: None})
    assert torch.load(path, weights_only=True)["format"] == "x"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.pt"]


def test_init_weights_from_safetensors_and_prefixed_state_dicts(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    from lvmharness.models.build import create_model

    src = create_model("smoke_vit", num_classes=10)
    save_file(src.state_dict(), str(tmp_path / "w.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in src.state_dict().items()}}, tmp_path / "w.pth")
    for name in ("w.safetensors", "w.pth"):
        dst = create_model("smoke_vit", num_classes=5)
        info = load_init_weights(dst, tmp_path / name)
        assert info["head_replaced"]
        assert torch.equal(dst.state_dict()["blocks.0.attn.qkv.weight"], src.state_dict()["blocks.0.attn.qkv.weight"])
    with pytest.raises(CheckpointError, match=r"not weights for this architecture|does not fit"):
        load_init_weights(create_model("smoke_deit"), tmp_path / "w.pth")


def test_sigkill_mid_epoch_then_resume(tmp_path: Path) -> None:
    args = [sys.executable, str(ROOT / "train.py"), "--model", "smoke_resnet", "--device", "cpu", "--workers", "0",
            "--dataset", "synthetic", "--synthetic_size", "160", "--synthetic_classes", "4", "--img_size", "32",
            "--batch_size", "8", "--epochs", "3", "--max_eval_steps", "1", "--output_dir", str(tmp_path / "out"),
            "--results_dir", str(tmp_path / "res")]
    ckpt = tmp_path / "out" / "checkpoint.pt"
    proc = subprocess.Popen(args, cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.monotonic() + 120
    while not ckpt.exists():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.monotonic() < deadline, "no checkpoint after 120 s"
        time.sleep(0.05)
    time.sleep(0.3)  # into the second epoch
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    killed_at = load_checkpoint(ckpt)["epoch"]  # loads: not corrupt
    assert 1 <= killed_at < 3

    done = subprocess.run([*args, "--resume", str(ckpt)], cwd=tmp_path, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    final = load_checkpoint(ckpt)
    assert final["epoch"] == 3 and [h["epoch"] for h in final["history"]] == [1, 2, 3]
    epochs = [r["values"]["epoch"] for r in _records(tmp_path / "res") if r["metric"] == "train_epoch"]
    assert epochs[-1] == 3 and sorted(set(epochs)) == [1, 2, 3]


def _bounded(args: list[str], cwd: Path, timeout: float, env: dict[str, str] | None = None) -> tuple[int, str]:
    """Run ``args`` in its own process group; past ``timeout`` the whole group (torchrun and its workers) is
    killed and the test fails instead of hanging."""
    proc = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
                            start_new_session=True)
    try:
        out, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        out, _ = proc.communicate()
        pytest.fail(f"{' '.join(args[:6])}... still running after {timeout} s (a hang):\n{out[-3000:]}")
    return proc.returncode, out


@pytest.mark.slow  # two torchrun launches of two processes each
def test_torchrun_two_processes_on_cpu_with_and_without_a_trace(tmp_path: Path) -> None:
    def torchrun(out: str, *extra: str) -> str:
        args = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
                str(ROOT / "train.py"), "--model", "smoke_vit", "--device", "cpu", "--workers", "0", "--dataset",
                "synthetic", "--synthetic_size", "64", "--synthetic_classes", "4", "--batch_size", "4", "--epochs",
                "2", "--output_dir", str(tmp_path / out), "--results_dir", str(tmp_path / f"res-{out}"), *extra]
        rc, text = _bounded(args, tmp_path, 300, env={**os.environ, "OMP_NUM_THREADS": "1"})
        assert rc == 0, text[-4000:]
        return text

    stdout = torchrun("plain")
    records = _records(tmp_path / "res-plain")
    epochs = [r for r in records if r["metric"] == "train_epoch"]
    assert [r["values"]["epoch"] for r in epochs] == [1, 2]  # one set, written by rank 0 only
    assert all(r["options"]["world_size"] == 2 and r["batch_size"] == 8 for r in epochs)
    # 64 images, global batch 8: 8 steps of 4 images on each of the 2 ranks.
    assert all(r["values"]["images"] == 64 and r["values"]["steps"] == 8 for r in epochs)
    assert len([r for r in records if r["metric"] == "train_result"]) == 1
    assert sorted(p.name for p in (tmp_path / "plain").iterdir()) == ["checkpoint.pt", "tb"]
    assert load_checkpoint(tmp_path / "plain" / "checkpoint.pt")["epoch"] == 2
    assert stdout.count("epoch 2/2:") == 1

    # --profile: every rank takes the traced steps (DDP's backward all-reduces need both), rank 0 writes the
    # trace, and the states the steps touched are put back: the same losses as the untraced run, bit for bit.
    torchrun("traced", "--profile")
    traces = list((tmp_path / "traced" / "tb" / "profile").glob("*.pt.trace.json*"))
    assert len(traces) == 1, traces
    plain = load_checkpoint(tmp_path / "plain" / "checkpoint.pt")["history"]
    traced = load_checkpoint(tmp_path / "traced" / "checkpoint.pt")["history"]
    assert [h["loss"] for h in traced] == [h["loss"] for h in plain]


def test_lvm_train_is_train_py(capsys: pytest.CaptureFixture[str]) -> None:
    from lvmharness.commands.main import main as lvm

    with pytest.raises(SystemExit):
        lvm(["train", "--help"])
    assert "--init_checkpoint" in capsys.readouterr().out


def test_bad_flags() -> None:
    with pytest.raises(ValueError, match="--batch_size must be >= 1"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="--lr must be a positive"):
        TrainConfig(lr=-1.0)
