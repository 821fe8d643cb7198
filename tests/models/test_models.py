"""The registry: every registered alias is built and run on meta (registry-driven, like timm's tests)."""

from __future__ import annotations

import pytest
import torch

from lvmharness.models import aliases
from lvmharness.models import build as models
from lvmharness.models.build import InvalidInputSizeError, UnknownModelError

ALL = [s.alias for s in aliases.registered()]


def test_original_aliases_are_exactly_the_original_models() -> None:
    assert {a: models.resolve(a).timm_name for a in aliases.ORIGINAL_ALIASES} == {
        "vit": "vit_base_patch16_224",
        "deit": "deit_base_patch16_224",
        "swin": "swin_base_patch4_window7_224",
        "resnet": "resnet50",
    }


@pytest.mark.parametrize("alias", ALL)
def test_every_alias_builds_on_meta_and_runs_at_its_default_size(alias: str) -> None:
    spec = models.resolve(alias)
    net = models.create_model(spec, device="meta", num_classes=7).eval()
    assert all(p.device.type == "meta" for p in net.parameters())
    with torch.no_grad():
        out = net(torch.empty(2, 3, spec.default_img_size, spec.default_img_size, device="meta"))
    assert tuple(out.shape) == (2, 7)
    assert spec.family in aliases.FAMILIES


@pytest.mark.parametrize("alias", [a for a in ALL if a.startswith("smoke_")])
def test_smoke_models_run_for_real_on_cpu(alias: str) -> None:
    net = models.create_model(alias, num_classes=10).eval()
    with torch.no_grad():
        out = net(torch.randn(2, 3, 32, 32))
    assert out.shape == (2, 10)
    assert torch.isfinite(out).all()


def test_any_timm_name_resolves_with_its_family_and_size() -> None:
    spec = models.resolve("swin_base_patch4_window12_384")
    assert (spec.family, spec.default_img_size, spec.timm_name) == ("swin", 384, "swin_base_patch4_window12_384")
    assert models.resolve("convnext_tiny").family == "convnext"


@pytest.mark.parametrize(("name", "expected"), [("vitt", "vit"), ("resnt50", "resnet50"), ("swin_tinyy", "swin_tiny")])
def test_unknown_name_fails_with_close_matches(name: str, expected: str) -> None:
    with pytest.raises(UnknownModelError) as info:
        models.resolve(name)
    assert expected in info.value.matches
    assert name in str(info.value) and "lvm models" in str(info.value)


def test_unknown_name_fails_before_building(monkeypatch: pytest.MonkeyPatch) -> None:
    def boom(*a: object, **k: object) -> None:
        raise AssertionError("timm.create_model must not be called for an unknown name")

    monkeypatch.setattr(models.timm, "create_model", boom)
    with pytest.raises(UnknownModelError):
        models.create_model("no_such_model_xyz")


@pytest.mark.parametrize(
    ("model", "size", "reason", "valid"),
    [
        ("vit", 225, "multiple of the patch size 16", [224, 240]),
        ("smoke_vit", 36, "multiple of the patch size 8", [32, 40]),
        ("swin", 384, "attention window 7", [224, 448]),
        ("swin", 160, "attention window 7", [224]),
        ("smoke_swin", 40, "attention window 4", [32]),
        ("resnet", 16, "smaller than the minimum 32", [32]),
    ],
)
def test_impossible_sizes_fail_with_valid_sizes(model: str, size: int, reason: str, valid: list[int]) -> None:
    with pytest.raises(InvalidInputSizeError) as info:
        models.check_img_size(model, size)
    assert reason in str(info.value)
    assert set(valid) <= set(info.value.valid)
    for v in info.value.valid:
        models.check_img_size(model, v)  # every size offered as valid really is


def test_swin_at_384_points_to_timms_384_variant() -> None:
    with pytest.raises(InvalidInputSizeError, match="swin_base_patch4_window12_384"):
        models.check_img_size("swin", 384)


@pytest.mark.parametrize("size", [0, 8, 5000])
def test_sizes_out_of_range(size: int) -> None:
    with pytest.raises(InvalidInputSizeError, match="outside the supported range"):
        models.check_img_size("resnet", size)


@pytest.mark.parametrize(("model", "size"), [("vit", 384), ("swin", 448), ("resnet", 225), ("deit_small", 160)])
def test_valid_non_default_sizes_build(model: str, size: int) -> None:
    net = models.create_model(model, img_size=size, device="meta").eval()
    with torch.no_grad():
        assert net(torch.empty(1, 3, size, size, device="meta")).shape == (1, 1000)


def test_params_are_counted_once_when_shared() -> None:
    lin = torch.nn.Linear(4, 4)
    net = torch.nn.Sequential(lin, lin)
    assert models.count_params(net) == 20
