"""The work API: what is running now, time per layer on this machine's CPU, a step's memory on fake tensors."""

from __future__ import annotations

from flask import Blueprint, Response, jsonify, request

from lvmharness.models.aliases import canonical_model, graph_name

from . import folder, work
from .errors import ApiError
from .params import BUDGET_GIB_RANGE, float_value, memory_mode, requested
from .state import page_state

runs = Blueprint("runs", __name__)


@runs.get("/api/status")
def status() -> Response:
    return jsonify({"running": page_state().status_list()})


@runs.post("/api/measure")
def measure() -> Response:
    """Time the model per layer on the CPU (seconds to a minute of full CPU use), one measurement at a time."""
    state = page_state()
    if not state.can_measure:
        raise ApiError(403, "measuring is off: start the page with --allow-measure to time models on this CPU")
    if not request.is_json:
        raise ApiError(415, "send the model as a JSON body (Content-Type: application/json)")
    want = requested(state.served)
    if want.dtype != "fp32":
        raise ApiError(400, "the page measures fp32 on the CPU; use `lvm layers --dtype` for other dtypes")
    name = graph_name(canonical_model(want.model), want.img_size, want.batch, want.dtype)
    if not state.measure_lock.acquire(blocking=False):
        busy = ", ".join(k for k, v in state.running.items() if v["kind"] == "measure")
        raise ApiError(409, f"a measurement is running ({busy}); try again when it is done",
                       running=state.status_list())
    try:
        with state.running_as(name, "measure"):
            work.measure(want, state.root)
    finally:
        state.measure_lock.release()
    return jsonify(folder.with_times(state.root, folder.load(folder.graph_path(state.root, name)), name))


@runs.get("/api/memory")
def memory() -> Response:
    """The predicted peak of one step on fake tensors, its breakdown, the bytes each layer keeps for backward
    and, with ``budget_gib``, the largest batch whose peak fits."""
    state = page_state()
    if not state.generate:
        raise ApiError(404, "memory prediction runs the model on fake tensors; generation is off")
    want = requested(state.served)
    mode = memory_mode()
    budget = float_value("budget_gib", request.args.get("budget_gib"), BUDGET_GIB_RANGE)
    key = (*want, mode, budget)
    if key not in state.predictions:
        with state.lock, state.running_as(f"memory:{want.model}-{want.img_size}-b{want.batch}-{want.dtype}-{mode}",
                                          "memory"):
            state.predictions[key] = work.predict_memory(want, mode, budget)
    return jsonify(state.predictions[key])
