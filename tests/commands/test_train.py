"""train.py's command line: built from TrainConfig's fields, and every bad input one clear line, exit 2, nothing
written (not even an empty folder)."""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path

import pytest
import torch

from lvmharness.commands.train import main
from lvmharness.core.errors import ConfigError
from lvmharness.train import TrainConfig, build_parser, load_checkpoint, save_checkpoint
from tests.helpers.datasets import write_cifar100

COMMON = ["--model", "smoke_vit", "--device", "cpu", "--workers", "0", "--batch_size", "4"]


def test_every_option_is_a_field_with_the_fields_default() -> None:
    parsed = vars(build_parser().parse_args([]))
    assert parsed == dataclasses.asdict(TrainConfig())  # one default per setting: the dataclass's
    assert build_parser().parse_args(["--amp"]).amp == "auto"  # the seed's bare --amp still works
    assert build_parser().parse_args(["--amp", "fp16", "--download"]).amp == "fp16"
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--phase", "3"])


def test_a_config_error_names_the_field_and_each_front_end_renders_its_option() -> None:
    with pytest.raises(ConfigError) as info:
        TrainConfig(batch_size=0)
    assert info.value.field == "batch_size"
    assert str(info.value) == "--batch_size must be >= 1, got 0"
    assert info.value.render(lambda f: "--lvm-batch-sizes") == "--lvm-batch-sizes must be >= 1, got 0"


@pytest.fixture(scope="module")
def saved_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A checkpoint of a one-epoch smoke_vit run on 4 synthetic classes at 32 px."""
    root = tmp_path_factory.mktemp("saved")
    rc = main([*COMMON, "--dataset", "synthetic", "--synthetic_size", "8", "--synthetic_classes", "4",
               "--max_eval_steps", "1", "--output_dir", str(root / "out"), "--results_dir", str(root / "res")])
    assert rc == 0
    return root / "out" / "checkpoint.pt"


def _no_optimizer(tmp_path: Path, saved: Path) -> list[str]:
    ckpt = load_checkpoint(saved)
    del ckpt["optimizer"]
    save_checkpoint(tmp_path / "partial.pt", ckpt)
    return [*SYNTHETIC, "--resume", str(tmp_path / "partial.pt")]


def _junk_cifar(tmp_path: Path) -> list[str]:
    folder = write_cifar100(tmp_path / "data", train=8, test=4)
    for name in ("train", "test", "meta"):
        (folder / name).write_bytes(b"junk" * 16)  # 'j' is no pickle opcode: UnpicklingError
    return ["--phase", "2", "--data_dir", str(tmp_path / "data")]


SYNTHETIC = ["--dataset", "synthetic", "--synthetic_size", "8", "--synthetic_classes", "4"]
CASES = {
    "img_size 0": (lambda tmp, saved: [*SYNTHETIC, "--img_size", "0"], "--img_size must be >= 1, got 0"),
    "max_steps 0": (lambda tmp, saved: [*SYNTHETIC, "--max_steps_per_epoch", "0"],
                    "--max_steps_per_epoch must be >= 1, got 0"),
    "zero steps": (lambda tmp, saved: [*COMMON, "--dataset", "synthetic", "--synthetic_size", "64", "--batch_size",
                                       "128"], "--batch_size 128 x 1 process(es) is more than the 64 training images"),
    "fp16 on cpu": (lambda tmp, saved: [*SYNTHETIC, "--amp", "fp16"], "--amp fp16"),
    "output_dir a file": (lambda tmp, saved: [*SYNTHETIC, "--output_dir", str(tmp / "file")], "is a file"),
    "results_dir a file": (lambda tmp, saved: [*SYNTHETIC, "--results_dir", str(tmp / "file")], "is a file"),
    "resume, other size": (lambda tmp, saved: [*SYNTHETIC, "--img_size", "64", "--resume", str(saved)],
                           "saved with img_size 32, this run has 64: resume with the settings it was saved with "
                           "(--img_size 32)"),
    "resume, other classes": (lambda tmp, saved: [*COMMON, "--dataset", "synthetic", "--synthetic_size", "8",
                                                  "--synthetic_classes", "5", "--resume", str(saved)],
                              "saved with num_classes 4, this run has 5"),
    "resume without optimizer": (_no_optimizer, "has no optimizer. To start from its weights only, pass it as "
                                                "--init_checkpoint instead of --resume"),
    "run_id outside the results folder": (lambda tmp, saved: [*SYNTHETIC, "--run_id", "../elsewhere"],
                                          "--run_id: run id '../elsewhere' is not valid"),
    "junk CIFAR-100": (lambda tmp, saved: _junk_cifar(tmp), "could not be read (UnpicklingError"),
}


@pytest.mark.parametrize("name", CASES)
def test_bad_input_is_one_clear_line_and_writes_nothing(name: str, tmp_path: Path, saved_run: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    make_args, expected = CASES[name]
    (tmp_path / "file").write_text("not a folder")
    out, res = tmp_path / "out", tmp_path / "res"
    args = make_args(tmp_path, saved_run)
    before = saved_run.read_bytes()
    rc = main([*COMMON, "--output_dir", str(out), "--results_dir", str(res), *args])
    err = capsys.readouterr().err
    assert rc == 2, err
    assert expected in err
    assert err.startswith("train.py: error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert not out.exists() and not res.exists()  # checked before any work: not even an empty folder
    assert (tmp_path / "file").read_text() == "not a folder" and saved_run.read_bytes() == before


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_read_only_output_dir_is_refused_before_any_work(tmp_path: Path,
                                                          capsys: pytest.CaptureFixture[str]) -> None:
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        rc = main([*COMMON, *SYNTHETIC, "--output_dir", str(locked / "out"), "--results_dir", str(tmp_path / "r")])
    finally:
        locked.chmod(0o700)
    assert rc == 2 and "is not writable" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_amp_bf16_on_cpu_is_labelled_and_runs_without_a_scaler(tmp_path: Path) -> None:
    from lvmharness.train import build_run

    cfg = TrainConfig(model="smoke_vit", device="cpu", workers=0, batch_size=4, dataset="synthetic",
                      synthetic_size=8, synthetic_classes=4, amp="auto", output_dir=str(tmp_path / "o"))
    run = build_run(cfg, device=torch.device("cpu"))
    # bf16 has fp32's exponent range: no loss scaling (Kalamkar et al. 2019, "A Study of BFLOAT16 ...").
    assert (run.amp_dtype, run.dtype_name, run.scaler.is_enabled()) == (torch.bfloat16, "amp_bf16", False)
