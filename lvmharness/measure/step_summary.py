"""What ``lvm memory`` reports about one step: its predicted peak and breakdown, optionally the same step measured
in a fresh process with the error, and the largest batch for a budget. Computed here; the command renders it."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from lvmharness.measure import prediction
from lvmharness.measure.batch_search import device_budget, predicted_max_batch
from lvmharness.measure.step import StepConfig, StepMemory


def _measured(pred: StepMemory, cfg: StepConfig, timeout_s: float) -> dict[str, Any]:
    meas = prediction.measure_isolated(cfg, timeout_s=timeout_s)
    out: dict[str, Any] = {"measure_status": meas["status"]}
    if meas["status"] != "ok":
        out["measure_error"] = meas["error"]
        return out
    mem = meas["memory"]
    out["measured_peak_bytes"] = mem["peak_bytes"]
    out["measured_breakdown_bytes"] = mem["breakdown"]
    out["rel_error"] = prediction.rel_error(pred.peak_bytes, mem["peak_bytes"])
    for key in ("cuda_max_memory_allocated_bytes", "cuda_max_memory_reserved_bytes"):
        if key in mem.get("extra", {}):
            out[key] = mem["extra"][key]
    return out


def summarize(cfg: StepConfig, *, per_layer: bool = False, measure: bool = False, timeout_s: float = 900.0,
              budget: str | int | None = None) -> tuple[StepConfig, StepMemory, dict[str, Any]]:
    """(the config as predicted, the prediction, the report's fields). ``budget``: bytes, or a CUDA device whose
    free memory is the budget (the step is then predicted for that device unless ``cfg`` names another)."""
    budget_info: dict[str, Any] = {}
    if isinstance(budget, str):  # a device: predict for it and take its free memory
        budget_info = device_budget(budget)
        cfg = replace(cfg, device=budget) if cfg.device == "cpu" else cfg
    elif isinstance(budget, int):
        budget_info = {"budget_bytes": budget}
    pred = prediction.predict_step(cfg, per_layer=per_layer)
    cfg = replace(cfg, img_size=pred.img_size)
    out: dict[str, Any] = {
        "model": cfg.model, "mode": cfg.mode, "batch_size": cfg.batch_size, "img_size": cfg.img_size,
        "dtype": cfg.dtype, "device": cfg.device, "channels_last": cfg.channels_last,
        **({"optimizer": cfg.optimizer} if cfg.mode == "train" else {}),
        "quantity": cfg.quantity(),
        "predicted_peak_bytes": pred.peak_bytes,
        "breakdown_bytes": pred.breakdown,
        "peak_phase": pred.peak_phase,
        "prediction_s": round(pred.wall_s, 3),
        "engine": pred.extra.get("engine"),
    }
    if per_layer:
        out["saved_for_backward_bytes"] = dict(sorted(pred.saved_for_backward.items(), key=lambda kv: -kv[1]))
    if measure:
        out.update(_measured(pred, cfg, timeout_s))
    if budget_info:
        found = predicted_max_batch(cfg, budget_info["budget_bytes"])
        out.update(budget_info)
        out["predicted_max_batch"] = found["predicted_max_batch"]
        out["budget_search"] = {k: v for k, v in found.items() if k != "predicted_max_batch"}
    return cfg, pred, out
