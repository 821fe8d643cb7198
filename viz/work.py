"""The page's torch side: build a graph on the meta device, time a model per layer on the CPU, predict a step's
memory on fake tensors. Every import of the library's torch side happens inside these functions, so a page that
serves saved graphs only (``--no-generate``) never imports torch."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lvmharness.core.memory_categories import CATEGORIES, LABELS
from lvmharness.core.units import GIB
from lvmharness.formats.graph_format import save_for_page, validate_graph
from lvmharness.models.aliases import graph_name

from .errors import ApiError
from .params import Requested


@contextmanager
def model_errors_as_api_errors(model: str) -> Iterator[None]:
    """The HTTP answer to a model that cannot be built, counted or run, for every path that builds one."""
    # Lazy: these modules import torch (see the module docstring).
    from lvmharness.measure.flops import FlopCountError
    from lvmharness.models.aliases import ModelError
    from lvmharness.models.build import InvalidInputSizeError, UnknownModelError
    from lvmharness.runtime.devices import DeviceUnavailableError

    try:
        yield
    except UnknownModelError as exc:
        raise ApiError(404, str(exc), matches=exc.matches) from None
    except InvalidInputSizeError as exc:
        raise ApiError(400, str(exc), valid=exc.valid) from None
    except ModelError as exc:  # e.g. an unknown torchvision:NAME, or a served factory that raised
        raise ApiError(400, str(exc)) from None
    except DeviceUnavailableError as exc:  # e.g. fp16 predicted on the CPU
        raise ApiError(400, str(exc)) from None
    except FlopCountError as exc:
        raise ApiError(422, f"{model} cannot be analysed exactly: {exc}") from None


def generate(want: Requested) -> dict[str, Any]:
    """Build a graph on the meta device (nothing allocated) and validate it."""
    from lvmharness.measure.graph import build_graph  # lazy: imports torch

    with model_errors_as_api_errors(want.model):
        doc = build_graph(want.model, img_size=want.img_size, batch_size=want.batch, dtype=want.dtype)
    validate_graph(doc)
    return doc


def measure(want: Requested, root: Path) -> None:
    """Time per layer on the CPU (3 steps after 1 warm-up) and save it, and the graph, where the page finds it."""
    from lvmharness.measure.layers.run import measure_from_spec  # lazy: imports torch

    with model_errors_as_api_errors(want.model):
        doc = measure_from_spec(want.model, img_size=want.img_size, batch_size=want.batch, device="cpu",
                                dtype=want.dtype, steps=3, warmup=1)
    save_for_page(doc, root, graph_name(want.model, want.img_size, want.batch, want.dtype), lambda: generate(want))


def predict_memory(want: Requested, mode: str, budget_gib: float | None) -> dict[str, Any]:
    """The peak of one step predicted on fake tensors (CPU semantics), its breakdown, the bytes each layer keeps
    for backward and, with ``budget_gib``, the largest batch whose peak fits."""
    # lazy: these import torch
    from lvmharness.measure.batch_search import predicted_max_batch
    from lvmharness.measure.prediction import predict_saved_for_backward, predict_step
    from lvmharness.measure.step import StepConfig

    with model_errors_as_api_errors(want.model):
        cfg = StepConfig(want.model, batch_size=want.batch, img_size=want.img_size, mode=mode, dtype=want.dtype)
        pred = predict_step(cfg)
        kept = predict_saved_for_backward(cfg)
        found = predicted_max_batch(cfg, int(budget_gib * GIB)) if budget_gib is not None else None
    out: dict[str, Any] = {
        "model": want.model, "img_size": want.img_size, "batch_size": want.batch, "dtype": want.dtype,
        "mode": mode, "device": "cpu", "quantity": cfg.quantity(), "predicted_peak_bytes": pred.peak_bytes,
        "breakdown_bytes": pred.breakdown, "peak_phase": pred.peak_phase, "prediction_s": round(pred.wall_s, 3),
        # the legend's order and words, from the one vocabulary the predictor files storages under
        "categories": [[name, LABELS[name]] for name in CATEGORIES],
        "saved_for_backward_bytes": dict(sorted(kept.items(), key=lambda kv: -kv[1])),
    }
    if found is not None:
        out.update(budget_gib=budget_gib, predicted_max_batch=found["predicted_max_batch"],
                   predicted_peak_at_max_bytes=found.get("predicted_peak_at_max_bytes"),
                   predicted_peak_at_next_bytes=found.get("predicted_peak_at_next_bytes"))
    return out
