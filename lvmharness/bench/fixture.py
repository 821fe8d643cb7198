"""The ``lvm`` fixture: what a bench needs for one case of the matrix.

A bench reads like this::

    def bench_forward_latency(lvm: Lvm, benchmark: BenchmarkFixture) -> None:
        with lvm.record("latency") as rec:               # a record is written whatever happens inside
            loaded = lvm.model()                          # built once per (model, device, dtype), then reused
            result = forward_latency(loaded.prepared, lvm.forward_case(), loaded.timer,
                                     runner=lvm.runner(benchmark))  # pytest-benchmark drives the rounds
            rec.values.update(result.values())
            rec.provenance.update(result.provenance())
            lvm.extra_info(benchmark, result.values())    # key values into pytest-benchmark's JSON too

``loaded.prepared`` is the model as the case runs it (dtype/AMP, channels_last, compile applied); measure that,
never ``loaded.model`` (the bare module).

Every test that asks for ``lvm`` is parametrized over the matrix that ``--lvm-profile`` and the ``--lvm-*``
options select; ids look like ``vit-cpu-fp32-b8-224`` so ``-k "resnet and b8"`` works. A bench that varies over
fewer axes says so with ``@pytest.mark.lvm_axes("model", "img_size", batch_size=1)``: each (model, size) once,
on the meta device, at batch 1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from lvmharness.bench.matrix import BenchCase
from lvmharness.bench.session import SESSION_KEY, LoadedModel, LvmSession, resolve_or_skip
from lvmharness.core.errors import UserError
from lvmharness.store.keys import EXTRA_INFO_KEYS

if TYPE_CHECKING:
    from lvmharness.measure.latency import ForwardCase, RoundFn, Runner
    from lvmharness.measure.memory import MemoryCase
    from lvmharness.runtime.data import DataSplits
    from lvmharness.store.records import CaseRecorder



# How this front end spells the library's settings in error messages (``{opt:FIELD}``, see lvmharness.core.errors).
# A training setting a bench fixes itself (lr, label_smoothing, ...) has no option here and is named as such.
OPTION_NAMES = {
    "model": "--lvm-models", "device": "--lvm-device", "batch_size": "--lvm-batch-sizes",
    "img_size": "--lvm-img-sizes", "amp": "--lvm-dtype", "dataset": "--lvm-train-dataset",
    "data_dir": "--lvm-data-dir", "download": "train.py --download",
}


def plugin_option(field: str) -> str:
    return OPTION_NAMES.get(field, f"the bench's {field} setting")


class BenchInputError(UserError):
    """A user-fixable error from the library, worded with the plugin's option names."""


class Lvm:
    """What a bench needs for one case: the case, the run store, the cached model, pytest-benchmark glue."""

    def __init__(self, session: LvmSession, case: BenchCase) -> None:
        self.session = session
        self.case = case

    @contextmanager
    def record(self, metric: str, phase: str = "inference", case: str | None = None) -> Iterator[CaseRecorder]:
        """A record is written whatever happens inside. An out-of-memory is recorded as ``oom`` and the bench
        is reported as xfail: a result, not a crash, and visible in pytest's summary. ``case``: a case id other
        than ``metric[label]`` (two records of one metric from one case, e.g. per mode)."""
        identity = self.case.identity(metric, phase)
        if case is not None:
            identity["case"] = case
        with self.session.store.case(**identity) as rec:
            from lvmharness.runtime.execution import numerics_settings

            rec.provenance["settings"] = numerics_settings()  # threads, TF32, cudnn: in every record
            if self.case.spec.overrides:  # a smoke model is a timm architecture with these changes
                rec.provenance["timm_overrides"] = self.case.spec.kwargs
            try:
                yield rec
            except UserError as exc:  # the library names train.py's options; the user is in pytest
                raise BenchInputError(exc.render(plugin_option)) from None
        if rec.status == "oom":
            pytest.xfail(f"out of memory, recorded as status oom: {rec.error}")

    def memory_case(self, mode: str, batch_size: int | None = None) -> MemoryCase:
        from lvmharness.measure.memory import MemoryCase

        case = self.case
        opts = case.exec_options()
        resolve_or_skip(case.device)
        # The child shares the device with this process: release our cached model and allocator pool first
        # (the child records what it found free, torch.cuda.mem_get_info, in its provenance).
        self.session.release()
        return MemoryCase(
            model=case.spec.portable_name, device=case.device, dtype=case.dtype,
            batch_size=batch_size or case.batch_size or 1, img_size=case.img_size, mode=mode,
            channels_last=opts.channels_last, compile_backend=opts.compile_backend if opts.compile else None,
            mem_limit_bytes=self.session.options.mem_limit_bytes,
        )

    def model(self) -> LoadedModel:
        return self.session.load(self.case)

    def forward_case(self) -> ForwardCase:
        from lvmharness.measure.latency import ForwardCase

        return ForwardCase(self.case.batch_size or 1, self.case.img_size)

    @staticmethod
    def runner(benchmark: Any) -> Runner | None:
        """Let pytest-benchmark drive our rounds: one pedantic round = one synchronized forward."""
        if getattr(benchmark, "disabled", False):
            return None

        def run(fn: RoundFn, n: int) -> None:
            benchmark.pedantic(fn, rounds=n, iterations=1, warmup_rounds=0)

        return run

    def efficiency(self, values: dict[str, Any]) -> dict[str, Any]:
        """MACs/FLOPs of this case, achieved FLOP/s at the median latency and MFU against the measured peak."""
        from lvmharness.measure.peak import efficiency, mac_mix_peak

        case = self.case
        report = self.session.flops(case.model, case.img_size, case.batch_size or 1)
        loaded = self.model()
        peak = self.session.peak(loaded.device, loaded.dtype)
        # The peak of the kernels carrying this model's MACs, at the precision they run (matmul vs conv probes).
        denominator, mix = mac_mix_peak(peak, report.by_op)
        out: dict[str, Any] = {"macs": report.macs, "flops": report.flops}
        achieved, notes = efficiency(report.macs, values["latency_ms_p50"], denominator)
        out.update(achieved)
        out["peak_flops_per_s"] = denominator
        out["peak_source"] = peak["source"]
        out["efficiency_notes"] = {**notes, "peak_mix": mix}
        return out

    def trace(self, metric: str, fn: Callable[[], Any], values: dict[str, Any]) -> None:
        """With --lvm-trace: a torch.profiler trace of ``fn`` plus scalars of ``values``, after the timed pass."""
        if not self.session.options.trace:
            return
        from lvmharness.runtime.traces import trace, write_scalars

        out = self.session.store.run_dir / "tb" / f"{metric}-{self.case.label}"
        trace(fn, out, self.model().device, worker_name=self.case.label, active=self.session.options.trace_steps)
        write_scalars(out, {k: v for k, v in values.items() if k in EXTRA_INFO_KEYS}, prefix=f"{metric}/")

    def layers(self, values: dict[str, Any]) -> None:
        """With --lvm-layers: time per module of this case in its own pass, after the timed rounds, as a
        ``layer_times`` record whose direct children's sum is held against this case's measured latency p50. The
        whole tree (ms, MACs, FLOP/s and roofline place per module) goes to ``<run>/layers/<case>.json``."""
        if not self.session.options.layers:
            return
        from lvmharness.bench.layer_record import record_values
        from lvmharness.core.fileio import atomic_write_json
        from lvmharness.measure.layers.run import measure_layers

        loaded = self.model()
        case = self.case
        with self.record("layer_times") as rec:
            prepared = loaded.prepared
            if prepared.options.compile:
                rec.skip("time per layer needs eager execution; torch.compile fuses the modules away")
                return
            if loaded.device.type == "mps":
                from lvmharness.measure.layers.run import MPS_REFUSAL

                rec.skip(MPS_REFUSAL)
                return
            peaks = {"flops_per_s": self.session.peak(loaded.device, loaded.dtype)["flops_per_s"],
                     "bytes_per_s": self.session.bandwidth(loaded.device)["bytes_per_s"]}
            x = prepared.make_input(case.batch_size or 1, case.img_size)
            doc = measure_layers(prepared, x, reference_ms=values["latency_ms_p50"],
                                 reference_source=f"latency p50 of {case.label} (its timed rounds)", peaks=peaks,
                                 model=loaded.timm_name, alias=case.model, family=case.spec.family)
            path = self.session.store.run_dir / "layers" / f"{case.label}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, doc)
            rec.values.update(record_values(doc))
            rec.provenance.update({
                "layers_file": str(path.relative_to(self.session.store.run_dir)),
                "method": "torch.profiler; each op's self time summed onto the module whose forward issued it",
                "clock": doc["clock"], "steps_profiled": doc["totals"]["steps_profiled"],
                "peak_flops_per_s": peaks["flops_per_s"], "peak_bytes_per_s": peaks["bytes_per_s"],
            })

    def extra_info(self, benchmark: Any, values: dict[str, Any]) -> None:
        benchmark.extra_info.update({k: values[k] for k in EXTRA_INFO_KEYS if k in values})
        benchmark.extra_info["case_id"] = self.case.label
        benchmark.extra_info["run_id"] = self.session.store.run_id


@pytest.fixture
def lvm(request: pytest.FixtureRequest) -> Lvm:
    """One case of the matrix (the plugin parametrizes every test that asks for ``lvm``)."""
    case = getattr(request, "param", None)
    if not isinstance(case, BenchCase):
        raise pytest.UsageError("the lvm fixture is parametrized by the lvmharness plugin; do not override it")
    return Lvm(request.config.stash[SESSION_KEY], case)


@pytest.fixture(scope="session")
def lvm_session(request: pytest.FixtureRequest) -> LvmSession:
    """The session state, for benches that build their own cases: ``Lvm(lvm_session, BenchCase(...))``."""
    return request.config.stash[SESSION_KEY]


@pytest.fixture(scope="session")
def lvm_train_data(request: pytest.FixtureRequest) -> Callable[[int], DataSplits]:
    """Datasets for training benches, built once per image size for the whole session."""
    from lvmharness.runtime.data import build as build_datasets

    options = request.config.stash[SESSION_KEY].options
    root = Path(options.data_dir)
    choice = options.train_dataset
    if choice == "auto":
        choice = "cifar100" if (root / "cifar-100-python" / "train").is_file() else "synthetic"
    cache: dict[int, DataSplits] = {}

    def get(img_size: int) -> DataSplits:
        if img_size not in cache:
            from lvmharness.runtime.data import DatasetNotFoundError

            try:
                cache[img_size] = build_datasets(choice, data_dir=root, img_size=img_size, synthetic_size=512)
            except DatasetNotFoundError as exc:
                message = exc.render(lambda f: "--lvm-train-dataset" if f == "dataset" else plugin_option(f))
            else:
                return cache[img_size]
            # Outside the except block: the failure carries the plugin's option names only, not the chained
            # exception, whose text names train.py's options.
            pytest.fail(f"--lvm-train-dataset {choice}: {message}", pytrace=False)
        return cache[img_size]

    return get


@pytest.fixture(scope="session")
def lvm_instance_samples(request: pytest.FixtureRequest) -> tuple[list[Any], str]:
    """Samples for per-instance latency, loaded once: (images, where they came from)."""
    from lvmharness.runtime.data import DatasetNotFoundError, raw_samples

    options = request.config.stash[SESSION_KEY].options
    name, root = options.instance_data, options.data_dir
    try:
        images = raw_samples(name, data_dir=root)
    except DatasetNotFoundError as exc:
        message = exc.render(lambda field: "--lvm-instance-data" if field == "dataset" else plugin_option(field))
        pytest.fail(f"--lvm-instance-data {name}: {message}", pytrace=False)
    return images, f"{name} validation split under {root}" if name != "synthetic" else "synthetic uint8 images"
