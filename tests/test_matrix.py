from __future__ import annotations

import pytest

from lvmharness.models import UnknownModelError, check_img_size
from lvmharness.matrix import PROFILES, build_cases, get_profile, parse_int_list


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


def test_list_parsing_errors_name_the_option() -> None:
    assert parse_int_list("1, 8,32", "--lvm-batch-sizes") == [1, 8, 32]
    assert parse_int_list(None, "x") is None
    with pytest.raises(ValueError, match="--lvm-batch-sizes: 'x8' is not an integer"):
        parse_int_list("1,x8", "--lvm-batch-sizes")
    with pytest.raises(ValueError, match="must be a positive"):
        parse_int_list("0", "--lvm-img-sizes")
    with pytest.raises(ValueError, match="valid profiles are"):
        get_profile("huge")


def test_identity_carries_the_timm_name_and_the_alias() -> None:
    (case,) = build_cases(get_profile("smoke"), devices=["cpu"], models=["resnet"], batch_sizes=[1])
    ident = case.identity("latency")
    assert (ident["model"], ident["alias"], ident["family"], ident["img_size"]) == ("resnet50", "resnet", "resnet", 224)
