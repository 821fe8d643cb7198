"""The flat values of a ``layer_times`` record (``--lvm-layers``), read from an ``lvmharness.layers`` document."""

from __future__ import annotations

from typing import Any


def record_values(doc: dict[str, Any]) -> dict[str, float | bool | None]:
    """Totals, the children-vs-p50 check, the contention of the profiled steps and the time per layer type."""
    t = doc["totals"]
    values: dict[str, float | bool | None] = {
        "layers_children_ms": t["children_ms"],
        "layers_ops_ms": t["ops_ms"],
        "layers_model_own_ms": t["model_own_ops_ms"],
        "layers_outside_model_ms": t["outside_model_ms"],
        "layers_reference_p50_ms": float(doc["reference"]["p50_ms"]),
        "layers_children_vs_p50": t["children_vs_p50"],
        "layers_within_tolerance": bool(t["within_tolerance"]),
    }
    busy = doc["reference"].get("profiled_steps") or {}
    if busy:
        values["contended"] = bool(busy.get("contended") or doc["reference"].get("contended"))
        values["cpu_share"] = busy.get("cpu_share")
        values["other_load_cores"] = busy.get("other_load_cores")
    for kind, ms in doc["by_type"].items():
        values[f"layer_type_{kind}_ms"] = ms
    return values
