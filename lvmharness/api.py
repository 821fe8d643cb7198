"""The Python API, for notebooks and scripts: the benches' measurements without pytest.

    from lvmharness import count_flops, measure_latency, measure_memory, load_results

    lat = measure_latency("resnet18", img_size=224, batch_size=8, device="cpu")
    print(lat.latency_ms_p50, lat.throughput_img_s)
    flops = count_flops(my_module, img_size=32)          # an nn.Module works too
    mem = measure_memory("mymodels:build", img_size=32)  # in a fresh process: a name or import path
    records = load_results("results/<run-id>")           # every record of a run folder

Each measurement is a frozen dataclass with units in its field names; ``.record()`` gives the schema-v1 result
record the benches write, so API results and bench results can be stored and compared together.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypedDict

from lvmharness.core.errors import BadValueError
from lvmharness.store.records import make_record, record_identity

if TYPE_CHECKING:
    import torch
    from torch import nn

    from lvmharness.models.aliases import ModelSpec

API_RUN_ID = "api"


@dataclass(frozen=True)
class _Identity:
    """Which model, how: the identity fields of a record."""

    model: str  # timm name, torchvision:NAME, module:callable, or the class name of a module passed in
    alias: str
    family: str
    device: str
    dtype: str
    batch_size: int
    img_size: int
    values: dict[str, Any] = field(repr=False)  # every value key, as the record stores them
    provenance: dict[str, Any] = field(repr=False)

    metric = ""

    def record(self, run_id: str = API_RUN_ID) -> dict[str, Any]:
        """The schema-v1 record of this measurement (``status: ok``)."""
        identity = record_identity(
            metric=self.metric, model=self.model, alias=self.alias, family=self.family, device=self.device,
            dtype=self.dtype, batch_size=self.batch_size, img_size=self.img_size,
        )
        return make_record(run_id=run_id, values=self.values, provenance=self.provenance, **identity)


@dataclass(frozen=True)
class Latency(_Identity):
    latency_ms_p50: float = 0.0
    latency_ms_p90: float = 0.0
    latency_ms_p99: float = 0.0
    latency_ms_iqr: float = 0.0
    throughput_img_s: float = 0.0  # images / wall time over the timed rounds (not 1 / latency)
    rounds: int = 0
    high_variance: bool = False  # IQR / median above 10 %

    metric = "latency"


@dataclass(frozen=True)
class FlopCount(_Identity):
    params: int = 0
    macs: int = 0  # forward multiply-accumulates of the whole batch (what papers call "FLOPs")
    flops: int = 0  # 2 x macs
    macs_fwd_bwd: int | None = None

    metric = "flops"


@dataclass(frozen=True)
class Memory(_Identity):
    status: str = "ok"  # ok | oom | error (an out-of-memory is a result)
    error: str | None = None
    rss_peak_bytes: int | None = None  # CPU: peak resident set of the fresh process, above its baseline
    mem_allocated_peak_bytes: int | None = None  # CUDA: the caching allocator's peak of live tensors
    mem_reserved_peak_bytes: int | None = None  # CUDA: the peak of what the allocator reserved from the driver

    metric = "memory_inference"

    def record(self, run_id: str = API_RUN_ID) -> dict[str, Any]:
        rec = super().record(run_id)
        rec["metric"] = self.provenance.get("metric", self.metric)
        rec["status"], rec["error"] = self.status, self.error
        return rec


class _Names(TypedDict):
    model: str
    alias: str
    family: str


def _names(model: nn.Module | str, spec: ModelSpec | None) -> _Names:
    """A record's model / alias / family: a name as its spec resolves it, a module passed in by its class name
    (family ``custom``)."""
    if isinstance(model, str) and spec is not None:
        return {"model": spec.timm_name, "alias": model, "family": spec.family}
    name = type(model).__name__
    return {"model": name, "alias": name, "family": "custom"}


def _spec(model: str) -> ModelSpec:
    from lvmharness.models.build import resolve

    return resolve(model)


def measure_latency(
    model: nn.Module | str,
    *,
    img_size: int | None = None,
    batch_size: int = 1,
    device: str = "cpu",
    dtype: str = "fp32",
    budget_s: float = 2.0,
) -> Latency:
    """Forward latency (eval, inference mode) at one shape, warmed up per shape, synchronized per round.

    An ``nn.Module`` is measured as given (moved to ``device`` and cast for ``dtype`` in place, as ``.to`` does);
    a name (alias, timm name, ``torchvision:NAME``, ``module:callable``) is built fresh. ``img_size`` defaults to
    the model's native size (224 for a module passed in).
    """
    from lvmharness.measure.budget import TimingConfig
    from lvmharness.measure.latency import ForwardCase, Timer, forward_latency
    from lvmharness.models.build import create_model
    from lvmharness.runtime.devices import resolve_device
    from lvmharness.runtime.execution import ExecOptions, Prepared

    if batch_size < 1:
        raise BadValueError(f"batch_size must be a positive integer, got {batch_size}")
    dev = resolve_device(device)
    if isinstance(model, str):
        spec = _spec(model)
        size = img_size or spec.default_img_size
        net = create_model(spec, img_size=size, device=dev)
        names = _names(model, spec)
    else:
        size = img_size or 224
        net = model
        names = _names(model, None)
    prepared = Prepared(net.eval().to(dev), dev, ExecOptions(dtype))
    result = forward_latency(prepared, ForwardCase(batch_size, size), Timer(dev, TimingConfig(budget_s=budget_s)))
    values, prov = result.values(), result.provenance()
    return Latency(
        **names, device=str(dev), dtype=dtype, batch_size=batch_size, img_size=size,
        values=values, provenance=prov, latency_ms_p50=values["latency_ms_p50"],
        latency_ms_p90=values["latency_ms_p90"], latency_ms_p99=values["latency_ms_p99"],
        latency_ms_iqr=values["latency_ms_iqr"], throughput_img_s=values["throughput_img_s"],
        rounds=prov["rounds"], high_variance=prov["high_variance"],
    )


def count_flops(model: nn.Module | str, *, img_size: int | None = None, batch_size: int = 1,
                backward: bool = True) -> FlopCount:
    """Params and MACs, exact: an op that carries multiply-accumulates but has no formula raises rather than
    giving a smaller number. A name is counted on the meta device (no memory); a module where its parameters
    are, with one forward (and backward) pass of a zero batch."""
    from lvmharness.measure.flops import analyze, forward_backward_macs, forward_macs
    from lvmharness.models.build import count_params

    if isinstance(model, str):
        report = analyze(model, img_size=img_size, batch_size=batch_size, backward=backward)
        names, size, device = _names(model, _spec(model)), report.img_size, report.device
        params, macs, macs_fwd_bwd, by_op = report.params, report.macs, report.macs_fwd_bwd, report.by_op
        counter = report.counter
    else:
        import torch

        size = img_size or 224
        param = next(model.parameters(), None)
        where: torch.device = param.device if param is not None else torch.device("cpu")
        x = torch.zeros(batch_size, 3, size, size, device=where)
        fwd = forward_macs(model, x)
        macs, by_op, params = fwd.macs, fwd.by_op, count_params(model)
        macs_fwd_bwd = forward_backward_macs(model, x).macs if backward else None
        names, device = _names(model, None), str(where)
        counter = "torch.utils.flop_counter.FlopCounterMode + lvmharness formulas"
    values: dict[str, Any] = {"params": params, "macs": macs, "flops": 2 * macs}
    if macs_fwd_bwd is not None:
        values.update(macs_fwd_bwd=macs_fwd_bwd, flops_fwd_bwd=2 * macs_fwd_bwd)
    return FlopCount(
        **names, device=device, dtype="fp32", batch_size=batch_size, img_size=size,
        values=values, provenance={"counter": counter, "counted_on": device, "macs_by_op": by_op,
                                   "convention": "macs"},
        params=params, macs=macs, flops=2 * macs, macs_fwd_bwd=macs_fwd_bwd,
    )


def measure_memory(model: str, *, img_size: int | None = None, batch_size: int = 1, device: str = "cpu",
                   dtype: str = "fp32", mode: str = "inference", mem_limit_bytes: int | None = None) -> Memory:
    """Peak memory of one inference (``mode="inference"``) or training step (``"train_step"``), measured in a
    fresh process that builds the model from its name, so only a name or import path can be measured: register
    a module's factory (``lvmharness.register_model``) or pass ``"package.module:factory"``."""
    from lvmharness.measure.memory import MemoryCase, run_isolated

    if not isinstance(model, str):
        raise TypeError("measure_memory runs the model in a fresh process, which rebuilds it from a name: pass an "
                        "alias, a timm name or 'package.module:factory', not a module object")
    spec = _spec(model)
    size = img_size or spec.default_img_size
    result = run_isolated(MemoryCase(model=spec.portable_name, device=device, dtype=dtype, batch_size=batch_size,
                                     img_size=size, mode=mode, mem_limit_bytes=mem_limit_bytes))
    values = result.values()
    known = {f.name for f in dataclasses.fields(Memory)}
    return Memory(
        **_names(model, spec), device=device, dtype=dtype, batch_size=batch_size,
        img_size=size, values=values, provenance={**result.provenance(), "metric": f"memory_{mode}"},
        status=result.status, error=result.error,
        **{k: v for k, v in values.items() if k in known and k.endswith("_bytes")},
    )


def load_results(path: Path | str) -> list[dict[str, Any]]:
    """Every record of a run folder (``results/<run-id>``) or a results.json file, validated as it is read."""
    from lvmharness.store.loading import load_records

    return load_records(path)
