from __future__ import annotations

import pytest

from lvmharness.bench.matrix import PROFILES, BenchCase, build_cases, get_profile, project
from lvmharness.models.build import UnknownModelError, check_img_size


def test_default_profile_is_the_seed_models_on_one_device() -> None:
    cases = build_cases(get_profile("default"), devices=["cpu"])
    assert {c.spec.family for c in cases} == {"vit", "deit", "swin", "resnet"}
    labels = [c.label for c in cases]
    assert "vit-cpu-fp32-b1-224" in labels and "resnet-cpu-fp32-b8-224" in labels
    assert len(labels) == len(set(labels))


@pytest.mark.parametrize("name", sorted(PROFILES))
def test_every_profile_case_is_a_valid_size_for_its_model(name: str) -> None:
    for case in {(c.model, c.img_size): c for c in build_cases(PROFILES[name], devices=["cpu"])}.values():
        check_img_size(case.model, case.img_size)


def test_cases_are_grouped_by_model_so_a_built_model_is_reused() -> None:
    cases = build_cases(get_profile("smoke"), devices=["cpu"])
    models = [c.model for c in cases]
    firsts = [m for i, m in enumerate(models) if i == 0 or models[i - 1] != m]
    assert len(firsts) == len(set(models))


def test_overrides_replace_axes() -> None:
    cases = build_cases(
        get_profile("default"), devices=["cpu"], models=["smoke_vit", "resnet18"], batch_sizes=[2, 4], dtypes=["bf16"]
    )
    assert {(c.model, c.batch_size, c.img_size, c.dtype) for c in cases} == {
        ("smoke_vit", 2, 32, "bf16"), ("smoke_vit", 4, 32, "bf16"),
        ("resnet18", 2, 224, "bf16"), ("resnet18", 4, 224, "bf16"),
    }


def test_unknown_model_in_options_fails_before_any_case() -> None:
    with pytest.raises(UnknownModelError, match="vit_tiny"):
        build_cases(get_profile("smoke"), devices=["cpu"], models=["vit_tinny"])


def test_unknown_profile_lists_the_valid_ones() -> None:
    with pytest.raises(ValueError, match="valid profiles are smoke, default, full"):
        get_profile("huge")


def test_projection_keeps_the_axes_a_bench_varies_and_fixes_the_rest() -> None:
    cases = build_cases(get_profile("smoke"), devices=["cpu"], models=["smoke_vit", "smoke_resnet"],
                        batch_sizes=[1, 2], img_sizes=[32, 96], options={"channels_last": True})
    assert len(cases) == 2 * 2 * 2  # models x batches x sizes on one device and dtype
    shapes = project(cases, ["model", "img_size"], {"batch_size": 1})
    assert shapes == [BenchCase(m, "meta", "fp32", 1, s) for m in ("smoke_vit", "smoke_resnet") for s in (32, 96)]
    # Without a batch axis: one case per (model, device, dtype, size), batch None, execution options kept.
    series = project(cases, ["model", "device", "dtype", "img_size"])
    assert {(c.model, c.batch_size, c.img_size, c.options) for c in series} == {
        (m, None, s, (("channels_last", True),)) for m in ("smoke_vit", "smoke_resnet") for s in (32, 96)
    }
    # Only the model: its native size (smoke_vit 32 px, smoke_resnet 64 px, as registered).
    assert [(c.model, c.img_size) for c in project(cases, ["model"], {"batch_size": 1})] == [
        ("smoke_vit", 32), ("smoke_resnet", 64)]


@pytest.mark.parametrize(("axes", "fixed", "message"), [
    (["model", "colour"], {}, "unknown axis 'colour'"),
    (["img_size"], {}, "'model' must be an axis"),
    (["model", "img_size"], {"img_size": 32}, "img_size cannot be both"),
])
def test_projection_rejects_nonsense(axes: list[str], fixed: dict[str, int], message: str) -> None:
    case = BenchCase("smoke_vit", "cpu", "fp32", 1, 32)
    with pytest.raises(ValueError, match=message):
        project([case], axes, fixed)


def test_identity_carries_the_timm_name_and_the_alias() -> None:
    (case,) = build_cases(get_profile("smoke"), devices=["cpu"], models=["resnet"], batch_sizes=[1])
    ident = case.identity("latency")
    assert (ident["model"], ident["alias"], ident["family"], ident["img_size"]) == ("resnet50", "resnet", "resnet", 224)
