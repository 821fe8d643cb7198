"""ONE table of the value keys a record's ``values`` may hold: adding a value key is one ``Key(...)`` line here.

Every reader takes what it needs from this table instead of a list of its own:
  * ``lvm compare`` takes the compare rule, the direction and whether the value is measured on a machine;
  * ``lvm report`` takes the CSV columns (in table order);
  * the pytest plugin copies the ``extra_info`` keys into pytest-benchmark's JSON;
  * the record's JSON Schema takes the type of each key (``record_schema``).
A key not in the table is still stored and shown, but never compared, never in the CSV and never in extra_info.

Each key names its compare rule (``exact``, ``samples``, ``relative``, ``points``, ``flag``, ``none``); what a rule
decides and against which tolerance is ``lvmharness.store.rules.RULES`` (one table, one entry per rule).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from lvmharness.core.memory_categories import CATEGORIES
from lvmharness.formats.graph_format import LAYER_TYPES

Rule = Literal["exact", "samples", "relative", "points", "flag", "none"]
Better = Literal["lower", "higher"]
# The JSON type of a value: a number (null when not finite), a bool, or a list of numbers (raw samples).
Kind = Literal["number", "integer", "bool", "list"]


@dataclass(frozen=True)
class Key:
    name: str
    unit: str  # "ms", "s", "bytes", "img/s", "MACs", "FLOPs", "FLOP/s", "%", "1" (a ratio or count), "px", "bool"
    doc: str
    better: Better | None = None  # which way is an improvement; None: neither (a setting, a count of rounds)
    rule: Rule = "none"
    samples: str | None = None  # rule "samples": the key holding the raw samples (same unit)
    csv: bool = False  # a column of ``lvm report``'s results.csv
    extra_info: bool = False  # copied into pytest-benchmark's ``extra_info``
    kind: Kind = "number"
    # Depends on the machine and on its load (timed or memory), so a cross-machine or contended pair of records
    # cannot decide it; counted values (params, MACs) compare anywhere.
    measured: bool = False

    def __post_init__(self) -> None:
        if (self.rule == "samples") != (self.samples is not None):
            raise ValueError(f"{self.name}: rule 'samples' needs Key.samples, and only it")
        if self.rule in ("samples", "relative", "points") and self.better is None:
            raise ValueError(f"{self.name}: rule {self.rule!r} needs a direction (better=)")
        if self.rule == "flag" and self.kind != "bool":
            raise ValueError(f"{self.name}: a flag is a bool")


def _ms(name: str, doc: str, **kw: Any) -> Key:
    """A time in milliseconds, measured on this machine: lower is better."""
    return Key(name, "ms", doc, "lower", measured=True, **kw)


def _bytes(name: str, doc: str, **kw: Any) -> Key:
    """A memory size in bytes, measured on this machine: lower is better, compared by the ``relative`` rule."""
    return Key(name, "bytes", doc, "lower", "relative", measured=True, **kw)


KEYS: tuple[Key, ...] = (
    # --- counts (exact) --------------------------------------------------------------------------------------------
    Key("params", "1", "parameters", "lower", "exact", extra_info=True, kind="integer"),
    Key("macs", "MACs", "forward multiply-accumulates of the batch", "lower", "exact", extra_info=True,
        kind="integer"),
    Key("flops", "FLOPs", "forward FLOPs of the batch, 2 x macs", "lower", "exact", extra_info=True, kind="integer"),
    Key("macs_fwd_bwd", "MACs", "forward + backward multiply-accumulates", "lower", "exact", kind="integer"),
    Key("flops_fwd_bwd", "FLOPs", "forward + backward FLOPs, 2 x macs_fwd_bwd", "lower", "exact", kind="integer"),
    Key("gmacs", "MACs", "forward multiply-accumulates per image / 1e9"),
    Key("graph_modules", "1", "modules in the exported graph", rule="exact", kind="integer"),
    Key("graph_structure_id", "1", "hash of the graph's module tree and shapes", rule="exact", kind="integer"),
    Key("scaling_macs", "MACs", "forward MACs at each of scaling_img_sizes", rule="exact", kind="list"),
    Key("scaling_img_sizes", "px", "input sides of the scaling fit", rule="exact", kind="list"),
    Key("macs_exponent_vs_pixels", "1", "k in MACs ~ pixels^k, least squares in log-log"),
    Key("max_batch_size", "1", "largest batch that fits", "higher", "exact", kind="integer"),
    Key("first_oom_batch", "1", "smallest batch that ran out of memory", kind="integer"),
    # --- forward latency (host clock, synchronized) ----------------------------------------------------------------
    _ms("latency_ms_p50", "median time of one forward of the batch", rule="samples", samples="samples", csv=True,
        extra_info=True),
    _ms("latency_ms_p90", "90th percentile", csv=True, extra_info=True),
    _ms("latency_ms_p95", "95th percentile", csv=True, extra_info=True),
    _ms("latency_ms_p99", "99th percentile", extra_info=True),
    _ms("latency_ms_iqr", "interquartile range", csv=True, extra_info=True),
    _ms("latency_ms_mean", "mean"),
    _ms("latency_ms_stdev", "sample standard deviation"),
    _ms("latency_ms_min", "fastest round"),
    _ms("latency_ms_max", "slowest round"),
    _ms("samples", "raw time per round (or per step, per request)", kind="list"),
    Key("throughput_img_s", "img/s", "images / wall time over the measured rounds; training: images per step / "
        "median step time after the warm-up steps (the steady state)", "higher", extra_info=True, measured=True),
    # --- device time (CUDA events) ---------------------------------------------------------------------------------
    _ms("device_latency_ms_p50", "median CUDA-event time of one forward", extra_info=True),
    _ms("device_latency_ms_p90", "90th percentile of CUDA-event time"),
    _ms("device_latency_ms_p99", "99th percentile of CUDA-event time"),
    _ms("device_latency_ms_iqr", "interquartile range of CUDA-event time"),
    _ms("device_latency_ms_mean", "mean CUDA-event time"),
    _ms("device_latency_ms_stdev", "standard deviation of CUDA-event time"),
    _ms("device_latency_ms_min", "fastest round, CUDA events"),
    _ms("device_latency_ms_max", "slowest round, CUDA events"),
    _ms("device_samples", "raw CUDA-event time per round", kind="list"),
    # --- efficiency ------------------------------------------------------------------------------------------------
    Key("achieved_flops_per_s", "FLOP/s", "flops / latency p50", "higher", extra_info=True, measured=True),
    Key("mfu", "1", "achieved FLOP/s / peak FLOP/s (best probe or theoretical); absent rather than above 1", "higher",
        csv=True, extra_info=True,
        measured=True),
    # --- torch.compile ---------------------------------------------------------------------------------------------
    _ms("compile_first_call_ms", "first call of the compiled model at this shape (the compile)"),
    Key("compile_graphs_this_shape", "1", "graphs compiled for this input shape"),
    Key("compile_graphs_total", "1", "graphs compiled so far for this model"),
    # --- timer fidelity --------------------------------------------------------------------------------------------
    _ms("bare_loop_ms_p50", "median of a bare perf_counter loop around the same call"),
    _ms("torch_timer_ms_median", "torch.utils.benchmark.Timer median of the same call"),
    Key("torch_timer_runs", "1", "runs torch.utils.benchmark made"),
    Key("ratio_ours_vs_bare_loop", "1", "latency_ms_p50 / bare_loop_ms_p50"),
    Key("ratio_ours_vs_torch_timer", "1", "latency_ms_p50 / torch_timer_ms_median"),
    Key("rounds", "1", "measured rounds"),
    # --- per-instance latency (batch 1, one request after another) -------------------------------------------------
    _ms("instance_latency_ms_p50", "median latency of one request", rule="samples", samples="samples", csv=True),
    _ms("instance_latency_ms_p90", "90th percentile", csv=True),
    _ms("instance_latency_ms_p99", "99th percentile"),
    _ms("instance_latency_ms_mean", "mean"),
    _ms("instance_latency_ms_p90_upper_bound", "upper confidence bound of the p90"),
    Key("instance_p90_sufficient", "bool", "enough requests for the p90's confidence bound", kind="bool"),
    Key("instance_requests", "1", "requests timed", kind="integer"),
    _ms("preprocess_ms_p50", "median decode + transform time per request"),
    _ms("preprocess_ms_p90", "90th percentile of preprocessing"),
    _ms("preprocess_samples", "raw preprocessing time per request", kind="list"),
    _ms("end_to_end_ms_p50", "median preprocessing + latency per request"),
    _ms("end_to_end_ms_p90", "90th percentile of preprocessing + latency"),
    Key("offline_throughput_img_s", "img/s", "throughput at the offline batch", "higher", measured=True),
    Key("offline_batch_size", "1", "batch of the offline throughput", kind="integer"),
    # --- memory ----------------------------------------------------------------------------------------------------
    _bytes("mem_allocated_peak_bytes", "CUDA peak allocated above the baseline", csv=True),
    _bytes("mem_reserved_peak_bytes", "CUDA peak reserved by the caching allocator", csv=True),
    _bytes("mem_allocated_end_bytes", "CUDA allocated after the pass"),
    _bytes("mem_activations_peak_bytes", "CUDA peak during the forward above its start"),
    _bytes("mem_weights_bytes", "parameter tensors"),
    _bytes("mem_buffers_bytes", "buffer tensors"),
    _bytes("mem_input_bytes", "the input batch"),
    _bytes("mem_grads_bytes", "gradient tensors after backward"),
    _bytes("mem_optimizer_bytes", "optimizer state tensors"),
    _bytes("mps_allocated_end_bytes", "MPS allocated at the end of the case (MPS keeps no peak)"),
    _bytes("mps_driver_allocated_end_bytes", "Metal driver allocated at the end of the case (not a peak)"),
    _bytes("rss_peak_bytes", "peak RSS (VmHWM) of the fresh process"),
    # The interpreter and torch before any model: reported, not gated (the peak already contains it, and a change of
    # it is the environment's, not the model's).
    Key("rss_baseline_bytes", "bytes", "RSS of the fresh process before the model", "lower", measured=True),
    _bytes("rss_peak_delta_bytes", "rss_peak_bytes - rss_baseline_bytes", csv=True),
    _bytes("rss_forward_peak_delta_bytes", "peak RSS growth over the forward"),
    Key("mem_limit_bytes", "bytes", "the memory cap the max-batch search ran under (a setting)"),
    # --- memory predicted on fake tensors (memory_predicted, memory_scaling): counted, so compared anywhere ----------
    Key("predicted_peak_bytes", "bytes", "peak live tensor bytes of the step, predicted on fake tensors", "lower",
        "exact", csv=True, extra_info=True, kind="integer"),
    *(Key(f"predicted_{cat}_bytes", "bytes", f"{cat.replace('_', ' ')} at the predicted peak", kind="integer")
      for cat in CATEGORIES),
    Key("prediction_s", "s", "wall time of the prediction (fake tensors), not a benchmark"),
    _bytes("measured_peak_bytes", "the same step's peak by MemTracker on real tensors", csv=True, kind="integer"),
    Key("prediction_rel_error", "1", "(predicted - measured) / measured_peak_bytes; target within 3%", csv=True),
    _bytes("cuda_max_memory_allocated_bytes", "torch.cuda.max_memory_allocated over the predicted step",
           kind="integer"),
    Key("prediction_rel_error_vs_cuda_allocated", "1", "(predicted - cuda allocated) / cuda allocated"),
    Key("activation_exponent_vs_pixels", "1", "k in activation bytes kept for backward ~ pixels^k, log-log fit"),
    Key("scaling_activation_bytes", "bytes", "activation bytes kept for backward at each of scaling_img_sizes",
        rule="exact", kind="list"),
    # --- training --------------------------------------------------------------------------------------------------
    Key("epoch", "1", "epoch number, from 1", kind="integer"),
    Key("epochs", "1", "epochs run", kind="integer"),
    Key("steps", "1", "optimizer steps timed", kind="integer"),
    Key("images", "1", "images seen", kind="integer"),
    Key("epoch_s", "s", "wall time of the (bounded) epoch", "lower", csv=True, measured=True),
    Key("data_wait_s", "s", "time waiting for the loader, host-to-device copy included", "lower", measured=True),
    Key("data_wait_share", "1", "data_wait_s / epoch_s", "lower", csv=True, measured=True),
    Key("compute_s", "s", "time in forward, backward and the optimizer step", "lower", measured=True),
    Key("eval_s", "s", "wall time of the evaluation", "lower", measured=True),
    Key("wall_s", "s", "wall time of the whole training run", "lower", measured=True),
    Key("train_s", "s", "training time: the sum of epoch_s, evaluation passes excluded", "lower", csv=True,
        measured=True),
    _ms("latency_b1_ms_p50", "median forward latency at batch 1 of the trained model (train_result)", csv=True),
    _ms("first_step_ms", "the first step (allocator growth, lazy init)"),
    _ms("step_ms_p50", "median step time"),
    _ms("step_ms_p90", "90th percentile step time"),
    _ms("step_ms_iqr", "interquartile range of the steady step times"),
    Key("epoch_throughput_img_s", "img/s", "images / epoch_s: the whole (bounded) epoch, warm-up steps included",
        "higher", measured=True),
    Key("loss", "1", "mean training loss of the epoch", "lower"),
    Key("lr", "1", "learning rate at the end of the epoch"),
    Key("num_classes", "1", "classes of the dataset", kind="integer"),
    Key("top1", "%", "top-1 accuracy on the validation split", "higher", "points", csv=True),
    Key("top5", "%", "top-5 accuracy on the validation split", "higher", "points", csv=True),
    Key("best_top1", "%", "best top-1 over the epochs", "higher", "points"),
    # --- time per layer (lvm layers, --lvm-layers): op self time summed onto the issuing module ----------------------
    _ms("layers_children_ms", "op time of the model's direct children in one profiled step"),
    _ms("layers_ops_ms", "op time of the whole profiled step, inside and outside modules"),
    _ms("layers_model_own_ms", "op time of the model's own forward code, outside its children"),
    _ms("layers_outside_model_ms", "op time outside the model (the loss, gradient accumulation)"),
    Key("layers_reference_p50_ms", "ms", "the timed p50 the children's sum is held against", measured=True),
    Key("layers_children_vs_p50", "1", "layers_children_ms / layers_reference_p50_ms (1.0: all time attributed)",
        measured=True),
    Key("layers_within_tolerance", "bool", "children's sum within 10% of the timed p50", kind="bool"),
    *(_ms(f"layer_type_{t}_ms", f"op time of the {t} layers in one profiled step", csv=True)
      for t in LAYER_TYPES),
    # --- the machine while measuring -------------------------------------------------------------------------------
    Key("contended", "bool", "other processes took the CPU while timing", rule="flag", csv=True, kind="bool"),
    Key("cpu_share", "1", "process CPU seconds / (wall seconds x torch threads) over the timed rounds", "higher"),
    Key("other_load_cores", "1", "mean cores busy with other processes over the timed rounds", "lower"),
)

BY_NAME: dict[str, Key] = {k.name: k for k in KEYS}
if len(BY_NAME) != len(KEYS):  # a key declared twice is a bug in this table, caught on import
    raise ValueError("a value key is declared twice in lvmharness.store.keys.KEYS")

CSV_KEYS: tuple[str, ...] = tuple(k.name for k in KEYS if k.csv)
EXTRA_INFO_KEYS: tuple[str, ...] = tuple(k.name for k in KEYS if k.extra_info)
EXACT_KEYS: tuple[str, ...] = tuple(k.name for k in KEYS if k.rule == "exact")
FLAG_KEYS: tuple[str, ...] = tuple(k.name for k in KEYS if k.rule == "flag")


def get(name: str) -> Key | None:
    return BY_NAME.get(name)


_JSON_TYPES: dict[str, Any] = {
    "number": {"type": ["number", "null"]},  # null: not finite (JSON has no NaN/inf)
    "integer": {"type": ["integer", "null"]},
    "bool": {"type": "boolean"},
    "list": {"type": "array", "items": {"type": ["number", "null"]}},
}


def value_properties() -> dict[str, Any]:
    """The JSON Schema of each declared value key (``properties`` of the record's ``values``)."""
    out: dict[str, Any] = {}
    for k in KEYS:
        better = f"; {k.better} is better" if k.better else ""
        out[k.name] = {**_JSON_TYPES[k.kind], "description": f"{k.doc} [{k.unit}]{better}; compare: {k.rule}"}
    return out
