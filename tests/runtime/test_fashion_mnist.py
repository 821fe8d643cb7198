"""Fashion-MNIST from its IDX files (tests write tiny ones in the real format), the model ladder, DeiT's hard
distillation and ``lvm accuracy``: right numbers, the same numbers on a re-run, and every bad input one clear line,
exit 2, nothing written."""

from __future__ import annotations

import gzip
import math
from pathlib import Path

import pytest
import torch

from lvmharness.commands.main import main as lvm
from lvmharness.commands.train import main as train_main
from lvmharness.models.ladder import LADDER_ALIASES
from lvmharness.runtime import idx_data
from tests.helpers.idx_files import LABEL_MAGIC, idx_bytes, learnable_images, write_fashion_mnist

FAST = ["--device", "cpu", "--workers", "0", "--batch_size", "16", "--max_steps_per_epoch", "2",
        "--max_eval_steps", "1"]


# --- the IDX reader ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("gz", [True, False])
def test_reads_the_idx_files_gzipped_or_not(tmp_path: Path, gz: bool) -> None:
    folder = write_fashion_mnist(tmp_path, train=30, test=20, gz=gz)
    images, labels = idx_data.load_split(folder, train=True)
    want_images, want_labels = learnable_images(30, seed=1)  # what write_fashion_mnist wrote for the train split
    assert torch.equal(images, want_images) and torch.equal(labels, want_labels.long())
    test_images, _ = idx_data.load_split(folder, train=False)
    assert test_images.shape == (20, 28, 28)


def test_grey_becomes_three_equal_channels_padded_to_32_and_normalized(tmp_path: Path) -> None:
    images = torch.zeros(1, 28, 28, dtype=torch.uint8)
    images[0, 0, 0] = 255
    ds = idx_data.GreyImages(images, torch.zeros(1, dtype=torch.int64), img_size=32)
    x, label = ds[0]
    assert x.shape == (3, 32, 32) and label == 0
    assert torch.equal(x[0], x[1]) and torch.equal(x[1], x[2])
    # (pixel / 255 - mean) / std: the padding and the black pixels are 0, the first image pixel (now at 2, 2) is 255.
    black = (0.0 - 0.2860) / 0.3530
    white = (1.0 - 0.2860) / 0.3530
    assert x[0, 0, 0].item() == pytest.approx(black) and x[0, 1, 1].item() == pytest.approx(black)
    assert x[0, 2, 2].item() == pytest.approx(white)
    assert x[0, 2, 3].item() == pytest.approx(black)


@pytest.mark.skipif(not (idx_data.SYSTEM_DIR / "train-images-idx3-ubyte.gz").is_file(),
                    reason="dataset-fashion-mnist is not installed")
def test_the_installed_files_are_the_release_and_its_mean_and_std() -> None:
    train_x, train_y = idx_data.load_split(idx_data.SYSTEM_DIR, train=True)
    test_x, test_y = idx_data.load_split(idx_data.SYSTEM_DIR, train=False)
    # Xiao et al. 2017: 60,000 training and 10,000 test images of 28x28, 10 classes of 6,000 / 1,000 each.
    assert train_x.shape == (60_000, 28, 28) and test_x.shape == (10_000, 28, 28)
    assert train_y.bincount().tolist() == [6000] * 10 and test_y.bincount().tolist() == [1000] * 10
    pixels = train_x.double() / 255
    assert pixels.mean().item() == pytest.approx(idx_data.FMNIST_MEAN, abs=5e-5)
    assert pixels.std().item() == pytest.approx(idx_data.FMNIST_STD, abs=5e-5)


def test_the_quick_subset_is_class_balanced_and_fixed() -> None:
    labels = torch.arange(1000) % 10
    a = idx_data.stratified_subset(labels, 7, seed=3)
    assert len(a) == 70 and labels[torch.tensor(a)].bincount().tolist() == [7] * 10
    assert a == idx_data.stratified_subset(labels, 7, seed=3) and a != idx_data.stratified_subset(labels, 7, seed=4)


def test_digits_is_sklearns_1797_images_split_three_to_one() -> None:
    pytest.importorskip("sklearn")
    splits = idx_data.digits(img_size=32)
    # load_digits: 1,797 images; a 75/25 split (train_test_split's default share) gives 1,348 / 449.
    assert len(splits.train) == round(0.75 * 1797) and len(splits.train) + len(splits.val) == 1797
    x, y = splits.train[0]
    assert x.shape == (3, 32, 32) and 0 <= y < 10


# --- bad input: one clear line naming the path, the expected files and the package --------------------------------


def _corrupt(kind: str) -> object:
    def make(folder: Path) -> Path:
        path = folder / "train-images-idx3-ubyte.gz"
        data = gzip.decompress(path.read_bytes())
        if kind == "magic":
            data = idx_bytes(torch.zeros(4, dtype=torch.uint8), LABEL_MAGIC)  # a label file under an image name
        elif kind == "size":
            data = data[:-7]  # the header announces more bytes than follow
        elif kind == "gzip":
            path.write_bytes(path.read_bytes()[:40])  # a cut gzip stream
            return path
        elif kind == "missing":
            path.unlink()
            return path
        path.write_bytes(gzip.compress(data))
        return path

    return make


@pytest.mark.parametrize(("kind", "says"), [
    ("magic", "magic number 0x00000801, not 0x00000803"),
    ("size", "truncated or corrupt"),
    ("gzip", "cannot read"),
    ("missing", "is missing"),
])
def test_bad_files_are_one_line_exit_2_and_nothing_written(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           kind: str, says: str) -> None:
    folder = write_fashion_mnist(tmp_path / "data", train=20, test=10)
    path = _corrupt(kind)(folder)  # type: ignore[operator]
    out, res = tmp_path / "out", tmp_path / "res"
    rc = train_main([*FAST, "--model", "ladder_resnet_tiny", "--dataset", "fashion_mnist", "--data_dir",
                     str(tmp_path / "data"), "--output_dir", str(out), "--results_dir", str(res)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1, err
    assert says in err and str(path).removesuffix(".gz") in err
    assert "train-images-idx3-ubyte[.gz]" in err and "apt-get install dataset-fashion-mnist" in err
    assert not out.exists() and not res.exists()


def test_no_folder_anywhere_names_both_places(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(idx_data, "SYSTEM_DIR", tmp_path / "not-installed")
    with pytest.raises(idx_data.IdxError) as info:
        idx_data.locate(tmp_path / "data")
    msg = str(info.value)
    assert str(tmp_path / "data" / "fashion-mnist") in msg and str(tmp_path / "not-installed") in msg
    assert "apt-get install dataset-fashion-mnist" in msg


def test_lvm_accuracy_with_a_corrupt_file_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = write_fashion_mnist(tmp_path / "data", train=20, test=10)
    _corrupt("magic")(folder)  # type: ignore[operator]
    rc = lvm(["accuracy", "--models", "ladder_resnet_tiny", "--data-dir", str(tmp_path / "data"),
              "--out", str(tmp_path / "res"), "--work-dir", str(tmp_path / "work")])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and "0x00000801" in err, err
    assert not (tmp_path / "res").exists() and not (tmp_path / "work").exists()


# --- the ladder -------------------------------------------------------------------------------------------------


def test_the_ladder_has_the_four_families_at_two_sizes_and_a_fifth_within_1_to_100_mmacs() -> None:
    from lvmharness.measure.flops import analyze
    from lvmharness.models.build import resolve

    families: dict[str, list[int]] = {}
    for alias in LADDER_ALIASES:
        report = analyze(alias, backward=False)  # on meta: builds from timm's class, counts every matmul/conv
        assert resolve(alias).default_img_size == 32 and report.img_size == 32
        families.setdefault(resolve(alias).family, []).append(report.macs)
    assert set(families) == {"vit", "deit", "swin", "resnet", "convnext"}
    for fam, macs in families.items():
        sizes = 2 if fam in ("vit", "deit", "swin", "resnet") else 1  # the four of the design, then one more
        assert len(macs) >= sizes and macs == sorted(macs), fam  # smallest first
        assert all(1e6 <= m <= 1e8 for m in macs), (fam, macs)
    assert len(LADDER_ALIASES) >= 9


def test_the_option_parsers_offer_exactly_the_budgets_lvm_accuracy_has() -> None:
    from lvmharness.models.ladder import LADDER_CONFIGS
    from lvmharness.train.accuracy import BUDGETS

    assert tuple(BUDGETS) == LADDER_CONFIGS


def test_ladder_vit_tiny_macs_from_the_transformer_formula() -> None:
    """MACs written out: 4x4 patches of 3 channels -> 64 tokens of 48 dims (+ class token = 65), 3 blocks of 2 heads,
    MLP ratio 4, a 10-class head on the class token."""
    from lvmharness.measure.flops import forward_macs
    from lvmharness.models.build import create_model

    n, d, heads, blocks = 65, 48, 2, 3
    patch = 64 * (3 * 4 * 4) * d
    block = n * d * 3 * d + 2 * heads * n * n * (d // heads) + n * d * d + 2 * n * d * 4 * d
    want = patch + blocks * block + d * 10
    model = create_model("ladder_vit_tiny", num_classes=10)
    assert forward_macs(model, torch.zeros(1, 3, 32, 32)).macs == want == 6_756_096


# --- DeiT hard distillation ----------------------------------------------------------------------------------------


def test_the_distillation_loss_is_half_true_label_half_teacher_label() -> None:
    from lvmharness.train.distill import DistillationLoss

    class Teacher(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.tensor([[0.0, 5.0, 0.0], [0.0, 0.0, 5.0]])  # says class 1, then class 2

    cls = torch.tensor([[2.0, 0.0, 0.0], [0.0, 1.0, 0.0]])
    dist = torch.tensor([[0.0, 1.0, 0.0], [1.0, 0.0, 0.0]])
    y = torch.tensor([0, 1])

    def ce(logits: list[float], target: int, eps: float = 0.0) -> float:
        logp = [v - math.log(sum(math.exp(u) for u in logits)) for v in logits]
        k = len(logits)  # label smoothing: (1 - eps) on the target, eps / k on every class
        return -sum(((1 - eps) * (i == target) + eps / k) * logp[i] for i in range(k))

    want = sum(0.5 * ce(cls[i].tolist(), int(y[i]), 0.1) + 0.5 * ce(dist[i].tolist(), [1, 2][i]) for i in range(2)) / 2
    loss = DistillationLoss(torch.nn.CrossEntropyLoss(label_smoothing=0.1), Teacher())
    assert loss(torch.zeros(2, 3, 4, 4), (cls, dist), y).item() == pytest.approx(want, rel=1e-6)


@pytest.fixture(scope="module")
def teacher(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A ladder_resnet_tiny checkpoint after two steps on a tiny Fashion-MNIST folder."""
    root = tmp_path_factory.mktemp("teacher")
    write_fashion_mnist(root / "data", train=64, test=32)
    rc = train_main([*FAST, "--model", "ladder_resnet_tiny", "--dataset", "fashion_mnist", "--data_dir",
                     str(root / "data"), "--output_dir", str(root / "out"), "--results_dir", str(root / "res")])
    assert rc == 0
    return root / "out" / "checkpoint.pt"


def test_a_distilled_deit_record_names_its_teacher(teacher: Path, tmp_path: Path) -> None:
    from lvmharness.store.loading import load_records

    write_fashion_mnist(tmp_path / "data", train=64, test=32)
    rc = train_main([*FAST, "--model", "ladder_deit_tiny", "--dataset", "fashion_mnist", "--data_dir",
                     str(tmp_path / "data"), "--output_dir", str(tmp_path / "out"), "--results_dir",
                     str(tmp_path / "res"), "--distill_from", str(teacher), "--run_id", "d"])
    assert rc == 0
    (result,) = [r for r in load_records(tmp_path / "res" / "d") if r["metric"] == "train_result"]
    assert result["options"]["teacher"] == "ladder_resnet_tiny"
    assert result["provenance"]["distill_from"] == str(teacher)
    assert result["provenance"]["distillation"].startswith("hard")


@pytest.mark.parametrize(("student", "extra", "says"), [
    ("ladder_deit_tiny", ["--dataset", "synthetic", "--synthetic_classes", "7", "--synthetic_size", "32",
                          "--img_size", "32"], "predicts 10 classes, this run's data has 7"),
    ("ladder_vit_tiny", ["--dataset", "synthetic", "--synthetic_classes", "10", "--synthetic_size", "32"],
     "needs a student with a distillation token"),
])
def test_a_teacher_that_does_not_fit_is_one_line_and_nothing_written(
        teacher: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], student: str, extra: list[str],
        says: str) -> None:
    rc = train_main([*FAST, "--model", student, *extra, "--output_dir", str(tmp_path / "out"),
                     "--results_dir", str(tmp_path / "res"), "--distill_from", str(teacher)])
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1 and says in err, err
    assert "--distill_from" in err
    assert not (tmp_path / "out").exists() and not (tmp_path / "res").exists()


# --- lvm accuracy ---------------------------------------------------------------------------------------------------


def test_the_same_seed_gives_the_same_top1_on_a_rerun(tmp_path: Path) -> None:
    from lvmharness.train.accuracy import Budget, run_ladder

    write_fashion_mnist(tmp_path / "data", train=40, test=20)
    budget = Budget(train_images=None, epochs=1, batch_size=8, lr=3e-3)

    def once(run_id: str, seed: int) -> tuple[float, float, float]:
        res = run_ladder(["ladder_resnet_tiny"], budget=budget, results_dir=tmp_path / "res",
                         work_dir=tmp_path / "work", run_id=run_id, data_dir=tmp_path / "data", seed=seed,
                         max_steps_per_epoch=2, latency_budget_s=0.0, quiet=True, progress=lambda _: None)
        (r,) = res.results
        loss = torch.load(r.checkpoint, weights_only=True)["history"][-1]["loss"]
        return r.top1, r.top5, loss

    first, again, other = once("a", 0), once("b", 0), once("c", 1)
    assert first == again  # bit-identical: top-1, top-5 and the epoch's mean loss
    assert other[2] != first[2]  # the seed does reach the run (weights and order differ)


@pytest.mark.slow
def test_lvm_accuracy_prints_the_table_distills_and_fine_tunes(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    from lvmharness.store.loading import load_records

    write_fashion_mnist(tmp_path / "data", train=60, test=30)
    rc = lvm(["accuracy", "--models", "ladder_resnet_tiny,ladder_deit_tiny", "--data-dir", str(tmp_path / "data"),
              "--out", str(tmp_path / "res"), "--work-dir", str(tmp_path / "work"), "--run-id", "q", "--epochs", "1",
              "--batch-size", "10", "--max-steps-per-epoch", "1", "--distill", "--finetune", "ladder_resnet_tiny",
              "--finetune-epochs", "1", "--latency-budget-s", "0"])
    out = capsys.readouterr().out
    assert rc == 0, out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert header.split()[:4] == ["model", "params", "(M)", "GMACs"] and "top-1" in header and "train s" in header
    rows = [line.split()[0] for line in out.splitlines() if line.startswith("ladder_")]
    assert rows == ["ladder_resnet_tiny", "ladder_deit_tiny"]  # cheapest first (3.9 vs 6.9 MMACs)
    assert "with teacher ladder_resnet_tiny" in out and "fine-tuned from Fashion-MNIST" in out
    ladder = [r for r in load_records(tmp_path / "res" / "q") if r["metric"] == "train_result"]
    assert sorted((r["alias"], r["options"].get("teacher", "")) for r in ladder) == [
        ("ladder_deit_tiny", ""), ("ladder_deit_tiny", "ladder_resnet_tiny"), ("ladder_resnet_tiny", "")]
    for r in ladder:
        v = r["values"]
        assert v["train_s"] > 0 and v["latency_b1_ms_p50"] > 0 and v["params"] > 0 and 0 <= v["top1"] <= 100
    digits = [r for r in load_records(tmp_path / "res" / "q-digits") if r["metric"] == "train_result"]
    assert sorted(r["provenance"].get("init_checkpoint") is not None for r in digits) == [False, True]
    assert {r["phase"] for r in digits} == {"finetune"} and {r["options"]["dataset"] for r in digits} == {"digits"}

