"""Model sources beside aliases and timm names: torchvision:NAME, module:callable factories, register_model, the
lvmharness.models entry points; each bad source is one clear line."""

from __future__ import annotations

import importlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from lvmharness.models import build as models
from lvmharness.models.aliases import ModelError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "own-model"

BAD_MODELS = '''
from torch import nn

def returns_int(num_classes: int = 10):
    return 3

def raises(img_size: int = 32):
    raise RuntimeError("weights file missing")

def takes_size(img_size: int, num_classes: int = 10) -> nn.Module:
    # A transformer-like factory: the input size is part of the architecture.
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * img_size * img_size, num_classes))
'''


def tiny_conv_counts(img_size: int, width: int = 16, num_classes: int = 10) -> tuple[int, int]:
    """Params and forward MACs of examples/own-model's TinyConvNet, by hand.

    A k x k conv from c_in to c_out channels has c_out * (c_in * k^2 + 1) parameters and does c_in * k^2 MACs per
    output element; with stride 2 and padding 1 a 3x3 conv maps side s to ceil(s / 2). A linear layer from n to m
    has m * (n + 1) parameters and m * n MACs. ReLU and average pooling carry no multiply-accumulates."""
    s1 = -(-img_size // 2)
    s2 = -(-s1 // 2)
    params = width * (3 * 9 + 1) + 2 * width * (width * 9 + 1) + num_classes * (2 * width + 1)
    macs = (s1 * s1 * width) * (3 * 9) + (s2 * s2 * 2 * width) * (width * 9) + num_classes * 2 * width
    return params, macs


@pytest.fixture
def project(user_modules: Path) -> Path:
    """The user's folder plus a module of bad factories and one that does not import."""
    (user_modules / "badmodels.py").write_text(BAD_MODELS)
    (user_modules / "brokenmodule.py").write_text("import numpy\nraise ImportError('needs CUDA 9')\n")
    return user_modules


def lvm(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "lvmharness", *args], cwd=cwd, capture_output=True, text=True,
                          timeout=600)


def test_factory_is_built_with_the_keywords_it_accepts(project: Path) -> None:
    spec = models.resolve("mymodels:build")
    assert (spec.timm_name, spec.family, spec.source, spec.default_img_size) == ("mymodels:build", "custom",
                                                                                 "factory", 224)
    net = models.create_model("mymodels:build", num_classes=7, img_size=40)  # build() takes no img_size
    assert net.get_submodule("head").out_features == 7
    sized = models.create_model("badmodels:takes_size", img_size=16, num_classes=5)
    linear = sized.get_submodule("1")
    assert linear.in_features == 3 * 16 * 16 and linear.out_features == 5


def test_registered_alias_carries_family_and_native_size(project: Path) -> None:
    importlib.import_module("mymodels")  # as a user's conftest.py or package import does: it registers tinyconv
    spec = models.resolve("tinyconv")
    assert (spec.family, spec.default_img_size, spec.timm_name) == ("tinyconv", 32, "mymodels:tinyconv")
    assert spec.portable_name == "mymodels:tinyconv"  # what a fresh process (the memory child) resolves
    # The import path of a registered factory resolves to the registration's family and size too.
    assert models.resolve("mymodels:tinyconv").family == "tinyconv"


def test_torchvision_source() -> None:
    spec = models.resolve("torchvision:resnet18")
    assert (spec.family, spec.source) == ("resnet", "torchvision")
    net = models.create_model(spec, num_classes=3, device="meta")
    assert net.get_submodule("fc").out_features == 3


def test_entry_point_of_an_installed_package(project: Path) -> None:
    # An installed distribution is a *.dist-info folder on sys.path; its entry_points.txt publishes the model.
    dist = project / "mymodels_pkg-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: mymodels-pkg\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[lvmharness.models]\npublished_net = mymodels:build\n")
    spec = models.resolve("published_net")
    assert (spec.alias, spec.timm_name, spec.source) == ("published_net", "mymodels:build", "factory")
    assert "published_net" in models.close_matches("published_nett")


@pytest.mark.parametrize(("source", "message"), [
    ("nosuch.module:x", "model source 'nosuch.module:x': module 'nosuch.module' does not import "
                        "(ModuleNotFoundError: No module named 'nosuch')"),
    ("brokenmodule:build", "module 'brokenmodule' does not import (ImportError: needs CUDA 9)"),
    ("mymodels:nosuch", "'mymodels' has no attribute 'nosuch'; it defines: TinyConvNet, build, tinyconv"),
    ("mymodels:buld", "'mymodels' has no attribute 'buld'; close matches: build"),
    ("badmodels:returns_int", "model source 'badmodels:returns_int': the factory returned int, not a "
                              "torch.nn.Module"),
    ("badmodels:raises", "model source 'badmodels:raises': the factory raised RuntimeError: weights file missing"),
    ("torchvision:resnet5", "unknown torchvision model 'resnet5' in 'torchvision:resnet5'. Close matches: "
                            "torchvision:resnet50"),
])
def test_bad_sources_are_one_clear_line(project: Path, source: str, message: str) -> None:
    with pytest.raises(ModelError) as info:
        models.create_model(source, img_size=32, device="meta")
    assert message in str(info.value) and "\n" not in str(info.value)


def test_cli_counts_torchvision_resnet50_as_published() -> None:
    # torchvision's model table for ResNet50 (IMAGENET1K_V1): 25,557,032 params, 4.09 "GFLOPS" — which are
    # multiply-accumulates (He et al. 2016, Table 1: 3.8e9 "FLOPs" excluding the fc and additions).
    proc = lvm("flops", "torchvision:resnet50", "--json", cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert (out["params"], out["macs"], out["model"]) == (25557032, 4089184256, "torchvision:resnet50")


def test_cli_counts_the_custom_model_by_hand(project: Path) -> None:
    proc = lvm("flops", "mymodels:build", "--img-size", "32", "--json", cwd=project)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    params, macs = tiny_conv_counts(32)
    assert (params, macs) == (5418, 405824)  # the formula's value, written out
    assert (out["params"], out["macs"], out["flops"]) == (params, macs, 2 * macs)


@pytest.mark.parametrize("source", ["nosuch.module:x", "mymodels:nosuch", "badmodels:returns_int",
                                    "badmodels:raises"])
def test_cli_bad_source_is_one_line_and_exit_2(project: Path, source: str) -> None:
    proc = lvm("flops", source, "--img-size", "32", cwd=project)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("lvm flops: error: model source") and source in lines[0]
