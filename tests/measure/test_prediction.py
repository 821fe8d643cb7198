"""Memory prediction on fake tensors, held against PyTorch's MemTracker on real CPU runs and against formulas.

The measured side is ``measure_step``: the same step on real tensors, accounted by
``torch.distributed._tools.mem_tracker.MemTracker`` (an implementation independent of the predictor's own
accountant). The formulas: fp32 weights take 4 bytes per parameter; AdamW (Loshchilov & Hutter, 2019) keeps two
moments per parameter, and torch.optim.AdamW on the CPU adds one float32 ``step`` scalar per parameter tensor;
SGD with momentum keeps one buffer per parameter; a convolution saves its input for the weight gradient.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lvmharness.commands.main import main
from lvmharness.core.memory_categories import CATEGORIES
from lvmharness.measure.batch_search import predicted_max_batch
from lvmharness.measure.prediction import activation_scaling, measure_step, predict_step, rel_error
from lvmharness.measure.step import StepConfig
from lvmharness.models.build import create_model

TOLERANCE = 0.03  # the target: within 3% of the measurement

# Tiny models of each family at two resolutions each accepts (patch 8 for the ViT/DeiT smoke models; Swin's
# windows of 4 over a 4-px patch grid; any multiple of 32 for the ResNet).
SIZES = {"smoke_vit": (32, 48), "smoke_deit": (32, 48), "smoke_swin": (32, 64), "smoke_resnet": (64, 96)}


@pytest.mark.parametrize("mode", ["inference", "train"])
@pytest.mark.parametrize("model", list(SIZES))
def test_prediction_is_within_3_percent_of_memtracker_on_a_real_run(model: str, mode: str) -> None:
    for size in SIZES[model]:
        for batch in (1, 3):
            cfg = StepConfig(model, batch_size=batch, img_size=size, mode=mode)
            predicted = predict_step(cfg)
            measured = measure_step(cfg)
            err = rel_error(predicted.peak_bytes, measured.peak_bytes)
            assert abs(err) <= TOLERANCE, (cfg, predicted.peak_bytes, measured.peak_bytes, err)
            assert predicted.peak_phase == measured.peak_phase
            assert sum(predicted.breakdown.values()) == predicted.peak_bytes
            # Both accountants file bytes the same way, up to the loss gradient's 4-byte scalar (MemTracker
            # counts it as an activation: it is created before any module's backward starts).
            for cat in CATEGORIES:
                assert abs(predicted.breakdown[cat] - measured.breakdown[cat]) <= 4, (cat, cfg)


def _param_stats(model: str) -> tuple[int, int, int]:
    net = create_model(model)
    params = list(net.parameters())
    return (sum(p.numel() for p in params), len(params),
            sum(b.numel() * b.element_size() for b in net.buffers()))


def test_breakdown_follows_the_formulas() -> None:
    n_params, n_tensors, buffer_bytes = _param_stats("smoke_swin")
    adamw = predict_step(StepConfig("smoke_swin", batch_size=2, mode="train", optimizer="adamw"))
    assert adamw.peak_phase == "backward"  # before the optimizer's own temporaries exist
    assert adamw.breakdown["params"] == 4 * n_params
    assert adamw.breakdown["buffers"] == buffer_bytes > 0  # Swin's relative position index and attention mask
    assert adamw.breakdown["optimizer_state"] == 2 * 4 * n_params + 4 * n_tensors
    sgd = predict_step(StepConfig("smoke_swin", batch_size=2, mode="train", optimizer="sgd"))
    assert sgd.breakdown["optimizer_state"] == 4 * n_params
    assert adamw.peak_bytes - sgd.peak_bytes == 4 * n_params + 4 * n_tensors

    inference = predict_step(StepConfig("smoke_swin", batch_size=2, mode="inference"))
    assert inference.breakdown["grads"] == inference.breakdown["optimizer_state"] == 0
    assert inference.breakdown["temporaries"] == 0
    assert inference.breakdown["params"] == 4 * n_params


def test_dtype_halves_the_weights() -> None:
    n_params, _, _ = _param_stats("smoke_vit")
    bf16 = predict_step(StepConfig("smoke_vit", batch_size=2, mode="inference", dtype="bf16"))
    assert bf16.breakdown["params"] == 2 * n_params


def test_saved_for_backward_per_layer() -> None:
    batch, size = 2, 64
    mem = predict_step(StepConfig("smoke_resnet", batch_size=batch, img_size=size, mode="train"), per_layer=True)
    # The stem convolution saves its input (the image batch) for its weight gradient.
    assert mem.saved_for_backward["conv1"] == batch * 3 * size * size * 4
    assert all(v > 0 for v in mem.saved_for_backward.values())
    # Everything saved is alive at the end of the forward, when the forward's activations peak.
    assert sum(mem.saved_for_backward.values()) <= mem.phase_peaks["forward"]


def test_activation_memory_is_linear_in_pixels_for_a_cnn() -> None:
    out = activation_scaling("smoke_resnet", [64, 128])
    # Every feature map has H*W proportional to the input's pixels; only the pooled vector and logits do not.
    assert 0.95 < out["exponent_vs_pixels"] <= 1.0 + 1e-9
    assert out["activation_bytes"][1] > out["activation_bytes"][0]


def test_predicted_max_batch_is_confirmed_by_real_runs() -> None:
    cfg = StepConfig("smoke_resnet", img_size=64, mode="train")
    budget = 24 * 2**20
    found = predicted_max_batch(cfg, budget)
    b = found["predicted_max_batch"]
    assert b >= 2 and found["confirmed"]
    assert found["predicted_peak_at_max_bytes"] <= budget < found["predicted_peak_at_next_bytes"]
    fits = measure_step(StepConfig("smoke_resnet", batch_size=b, img_size=64, mode="train"))
    too_big = measure_step(StepConfig("smoke_resnet", batch_size=b + 1, img_size=64, mode="train"))
    assert fits.peak_bytes <= budget < too_big.peak_bytes


def test_budget_below_the_weights_gives_zero() -> None:
    found = predicted_max_batch(StepConfig("smoke_vit", mode="train"), 1024)
    assert found["predicted_max_batch"] == 0


def test_cli_json_with_measure_and_budget(capsys: pytest.CaptureFixture[str]) -> None:
    """--measure runs the real step in a fresh child process (measure_isolated)."""
    code = main(["memory", "smoke_resnet", "--mode", "inference", "--batch-size", "2", "--measure",
                 "--budget", "16MiB", "--layers", "3", "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0, out
    assert set(out["breakdown_bytes"]) == set(CATEGORIES)
    assert out["predicted_peak_bytes"] == sum(out["breakdown_bytes"].values())
    assert abs(out["rel_error"]) <= TOLERANCE
    assert out["quantity"].startswith("MemTracker peak of live tensor bytes over one inference step")
    assert out["predicted_max_batch"] >= 2 and out["budget_bytes"] == 16 * 2**20
    assert out["saved_for_backward_bytes"]


def test_cli_text_names_the_quantity(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["memory", "smoke_vit", "--batch-size", "2", "--optimizer", "sgd"]) == 0
    text = capsys.readouterr().out
    assert "the step after the first" in text and "predicted peak" in text and "optimizer_state" in text


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["memory", "smoke_vit", "--dtype", "fp16"], "not measured on cpu"),
        (["memory", "smoke_vit", "--img-size", "36"], "multiple of the patch size"),
        (["memory", "vitt"], "unknown model"),
    ]
    + ([] if torch.cuda.is_available() else [(["memory", "smoke_vit", "--budget", "cuda:0"], "CUDA is not available")]),
)
def test_cli_bad_input(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize(("flag", "value"), [("--batch-size", "0"), ("--budget", "lots"), ("--mode", "training")])
def test_cli_rejects_nonsense_arguments(flag: str, value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["memory", "smoke_vit", flag, value])
    assert exc.value.code == 2
    assert flag in capsys.readouterr().err


def test_config_validation() -> None:
    with pytest.raises(ValueError, match="valid modes"):
        StepConfig("smoke_vit", mode="training")
    with pytest.raises(ValueError, match="valid optimizers"):
        StepConfig("smoke_vit", optimizer="lion")
    with pytest.raises(ValueError, match=">= 1"):
        StepConfig("smoke_vit", batch_size=0)
    with pytest.raises(ValueError, match="positive"):
        predicted_max_batch(StepConfig("smoke_vit"), 0)
    with pytest.raises(ValueError, match="positive"):
        rel_error(1.0, 0.0)


def test_page_memory_api_matches_a_real_run(tmp_path: Path) -> None:
    from viz.app import create_app

    client = create_app(tmp_path).test_client()
    budget_gib = 24 / 1024  # 24 MiB
    resp = client.get(f"/api/memory?model=smoke_resnet&batch_size=2&mode=train&budget_gib={budget_gib}")
    assert resp.status_code == 200, resp.get_json()
    d = resp.get_json()
    measured = measure_step(StepConfig("smoke_resnet", batch_size=2, img_size=64, mode="train"))
    assert abs(rel_error(d["predicted_peak_bytes"], measured.peak_bytes)) <= TOLERANCE
    assert sum(d["breakdown_bytes"].values()) == d["predicted_peak_bytes"]
    # the page's legend: every category of the breakdown once, in the vocabulary's order
    legend = [name for name, _ in d["categories"]]
    assert legend == ["params", "buffers", "grads", "optimizer_state", "activations", "temporaries"]
    assert set(legend) == set(d["breakdown_bytes"])
    assert d["saved_for_backward_bytes"]["conv1"] == 2 * 3 * 64 * 64 * 4  # the stem conv saves the image batch
    assert d["predicted_peak_at_max_bytes"] <= budget_gib * 2**30 < d["predicted_peak_at_next_bytes"]
    page = client.get("/").get_data(as_text=True)
    assert "memory-form" in page and client.get("/static/memory.js").status_code == 200


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("model=smoke_vit&mode=training", 400, "mode must be one of"),
        ("model=smoke_vit&budget_gib=-1", 400, "outside the allowed range"),
        ("model=smoke_vit&budget_gib=lots", 400, "number of GiB"),
        ("model=smoke_vit&dtype=fp16", 400, "not measured on cpu"),
        ("model=vitt", 404, "unknown model"),
    ],
)
def test_page_memory_api_bad_input(tmp_path: Path, query: str, status: int, message: str) -> None:
    from viz.app import create_app

    resp = create_app(tmp_path).test_client().get(f"/api/memory?{query}")
    assert resp.status_code == status and message in resp.get_json()["error"]


def test_a_parameter_without_gradient_gets_no_optimizer_state_in_the_prediction() -> None:
    """The prediction's first step skips the backward; the graph must still say which parameters get gradients."""
    from lvmharness.measure.step import _parameters_reached

    used, unused = torch.nn.Linear(4, 3), torch.nn.Linear(4, 3)
    loss = used(torch.randn(2, 4)).sum()
    reached = _parameters_reached(loss)
    assert reached == {id(used.weight), id(used.bias)}
    assert not reached & {id(unused.weight), id(unused.bias)}
