"""The CUDA paths, shown on the CPU where the mechanism allows: each test here makes the CPU take the branch a GPU
would (torch's own switches forced the way CUDA sets them) and checks the harness follows it."""

from __future__ import annotations

import pytest
from torch.optim import optimizer as torch_optimizer

from lvmharness.measure.prediction import StepConfig, measure_step, predict_step


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
