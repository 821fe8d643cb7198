"""pytest glue shared by benches/ and tests/: options, the case matrix, and the ``lvm`` fixture.

A bench reads like this::

    def bench_forward_latency(lvm: Lvm, benchmark: BenchmarkFixture) -> None:
        with lvm.record("latency") as rec:               # a record is written whatever happens inside
            loaded = lvm.model()                          # built once per (model, device, dtype), then reused
            result = forward_latency(loaded.prepared, lvm.forward_case(), loaded.timer,
                                     runner=lvm.runner(benchmark))  # pytest-benchmark drives the rounds
            rec.values.update(result.values())
            rec.provenance.update(result.provenance())
            lvm.extra_info(benchmark, result.values())    # key values into pytest-benchmark's JSON too

Every test that asks for ``lvm`` (or ``lvm_case``) is parametrized over the matrix that ``--lvm-profile`` and the
``--lvm-*`` overrides select; ids look like ``vit-cpu-fp32-b8-224`` so ``-k "resnet and b8"`` works.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import torch

from lvmharness import envinfo
from lvmharness.data import DatasetNotFoundError, DataSplits, raw_samples
from lvmharness.data import build as build_datasets
from lvmharness.devices import DeviceUnavailableError, resolve_device
from lvmharness.execution import DTYPE_MODES, ExecOptions, Prepared, check_dtype_mode
from lvmharness.measure.flops import FlopReport, analyze
from lvmharness.measure.latency import ForwardCase, RoundFn, Runner, Timer, TimingConfig
from lvmharness.measure.memory import MemoryCase
from lvmharness.measure.peak import efficiency, matmul_peak
from lvmharness.models import create_model
from lvmharness.matrix import (
    PROFILES,
    BenchCase,
    Profile,
    build_cases,
    get_profile,
    parse_bytes,
    parse_int_list,
    parse_list,
)
from lvmharness.results import CaseRecorder, RunStore

# Keys copied from a record's values into pytest-benchmark's extra_info (its JSON keeps them per bench).
EXTRA_INFO_KEYS = (
    "latency_ms_p50", "latency_ms_p90", "latency_ms_p99", "latency_ms_iqr", "throughput_img_s",
    "device_latency_ms_p50", "macs", "flops", "params", "achieved_flops_per_s", "mfu",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    g = parser.getgroup("lvmharness", "lvmharness bench matrix")
    g.addoption("--lvm-profile", default="default", choices=sorted(PROFILES),
                help="case matrix: smoke (CI, seconds), default (2-core CPU, seed models), full (GPUs)")
    g.addoption("--lvm-models", default=None,
                help="comma list of aliases or timm names (overrides the profile; native size unless "
                     "--lvm-img-sizes)")
    g.addoption("--lvm-device", default="auto",
                help="comma list of auto|cpu|cuda|cuda:N|mps (unavailable ones are skipped with the reason)")
    g.addoption("--lvm-dtype", default=None,
                help=f"comma list of {'|'.join(DTYPE_MODES)} (default: the profile's; fp16 not on cpu)")
    g.addoption("--lvm-channels-last", action="store_true", help="run every case in channels_last memory format")
    g.addoption("--lvm-compile", nargs="?", const="inductor", default=None, metavar="BACKEND",
                help="torch.compile every model (backend: inductor unless given); compile time recorded apart")
    g.addoption("--lvm-train-dataset", default="auto", choices=["auto", "synthetic", "cifar100", "imagenet"],
                help="data of the training benches; auto = cifar100 if <data-dir>/cifar-100-python exists, else "
                     "synthetic")
    g.addoption("--lvm-data-dir", default="data", help="where the training/instance benches look for datasets")
    g.addoption("--lvm-instance-data", default="synthetic", choices=["synthetic", "cifar100", "imagenet"],
                help="images of the per-instance latency bench (validation split, decoded, untransformed)")
    g.addoption("--lvm-mem-limit", default=None, metavar="SIZE",
                help="memory cap for each isolated memory case, e.g. 2GiB, 512MiB (enforced in the child)")
    g.addoption("--lvm-batch-sizes", default=None, help="comma list, e.g. 1,8,32")
    g.addoption("--lvm-img-sizes", default=None, help="comma list of square input sides in px, e.g. 224,384")
    g.addoption("--lvm-out", default="results", help="folder that receives <run-id>/results.json and env.json")
    g.addoption("--lvm-run-id", default=None, help="run id (default: UTC time + random suffix)")
    g.addoption("--lvm-trace", action="store_true",
                help="after timing, trace each case with torch.profiler (separate, untimed pass) into "
                     "<run>/tb/<case> with TensorBoard scalars of its key values")
    g.addoption("--lvm-budget-s", type=float, default=None, help="seconds of measured rounds per case")


@dataclass
class LvmSession:
    """Per-pytest-session state: options, the run store (created on first record), the model cache."""

    config: pytest.Config
    profile: Profile
    timing: TimingConfig
    out: Path
    run_id: str | None
    metric_cases: dict[str, list[BenchCase]]  # cases per bench metric ("" = every grid), built on demand
    _store: RunStore | None = None
    _env: dict[str, Any] | None = None
    _flops: dict[tuple[str, int, int], FlopReport] = field(default_factory=dict)
    _peaks: dict[str, dict[str, Any]] = field(default_factory=dict)
    _cached_key: tuple[Any, ...] | None = None
    _cached: LoadedModel | None = None

    @property
    def store(self) -> RunStore:
        if self._store is None:
            self._store = RunStore(self.out, self.run_id)
            devices = [d for d in (_try_device(s) for s in _device_specs(self.config)) if d is not None]
            self._env = {**envinfo.collect(devices), "profile": self.profile.name, "timing": self.timing.__dict__}
            self._store.write_env(self._env)
        return self._store

    def flops(self, model: str, img_size: int, batch_size: int) -> FlopReport:
        """Forward MACs of a case, counted once on the meta device."""
        key = (model, img_size, batch_size)
        if key not in self._flops:
            self._flops[key] = analyze(model, img_size=img_size, batch_size=batch_size, backward=False)
        return self._flops[key]

    def peak(self, device: torch.device, dtype: torch.dtype, dtype_name: str) -> dict[str, Any]:
        """Measured matmul peak for (device, dtype), probed once per run and recorded in env.json."""
        key = f"{device}/{dtype_name}"
        if key not in self._peaks:
            self._peaks[key] = matmul_peak(device, dtype)
            store = self.store
            assert self._env is not None
            self._env["peak_flops_per_s"] = {k: v["flops_per_s"] for k, v in self._peaks.items()}
            self._env["peak_probes"] = self._peaks
            store.write_env(self._env)
        return self._peaks[key]

    @property
    def devices(self) -> list[str]:
        return _device_specs(self.config)

    @property
    def used(self) -> bool:
        return self._store is not None

    def load(self, case: BenchCase) -> LoadedModel:
        key = (case.model, case.device, case.dtype, case.img_size, case.options)
        if self._cached_key == key and self._cached is not None:
            return self._cached
        # One model in memory at a time: large models × devices would not fit otherwise.
        self._cached = self._cached_key = None
        gc.collect()
        device = _device_or_skip(case.device)
        try:
            check_dtype_mode(case.dtype, device)
        except DeviceUnavailableError as exc:
            pytest.skip(str(exc))
        model = create_model(case.spec, img_size=case.img_size, device=device).eval()
        prepared = Prepared(model, device, case.exec_options())
        compute = prepared.autocast_dtype or prepared.param_dtype
        loaded = LoadedModel(case.spec.timm_name, prepared, device, compute, Timer(device, self.timing))
        self._cached, self._cached_key = loaded, key
        return loaded


@dataclass
class LoadedModel:
    timm_name: str
    prepared: Prepared  # the model with dtype/AMP, channels_last, compile applied
    device: torch.device
    dtype: torch.dtype  # the compute dtype (autocast's under AMP)
    timer: Timer  # one per model: its warm-up memory is per (model, input shape)

    @property
    def model(self) -> torch.nn.Module:
        return self.prepared.model


def _device_specs(config: pytest.Config) -> list[str]:
    return parse_list(config.getoption("--lvm-device")) or ["auto"]


def _try_device(spec: str) -> torch.device | None:
    try:
        return resolve_device(spec)
    except (DeviceUnavailableError, ValueError):
        return None


def _device_or_skip(spec: str) -> torch.device:
    try:
        return resolve_device(spec)
    except DeviceUnavailableError as exc:
        pytest.skip(str(exc))


SESSION_KEY = pytest.StashKey[LvmSession]()


def pytest_configure(config: pytest.Config) -> None:
    profile = get_profile(config.getoption("--lvm-profile"))
    timing = profile.timing
    budget = config.getoption("--lvm-budget-s")
    if budget is not None:
        timing = dataclasses.replace(timing, budget_s=budget)
    try:
        # Options are checked here, before collection: a typo stops the run with the reason and nothing measured.
        cases = _build_cases(config, profile)
        for dtype in parse_list(config.getoption("--lvm-dtype")) or []:
            if dtype not in DTYPE_MODES:
                raise ValueError(f"--lvm-dtype: unknown dtype {dtype!r}; valid dtypes are {', '.join(DTYPE_MODES)}")
        if config.getoption("--lvm-mem-limit"):
            parse_bytes(config.getoption("--lvm-mem-limit"))
    except ValueError as exc:
        raise pytest.UsageError(str(exc)) from exc
    config.stash[SESSION_KEY] = LvmSession(
        config, profile, timing, Path(config.getoption("--lvm-out")), config.getoption("--lvm-run-id"),
        metric_cases={"": cases},
    )


def display_device(spec: str) -> str:
    """'auto' becomes the concrete device type in ids, so ids say where a case ran."""
    if spec.strip().lower() != "auto":
        return spec.strip().lower()
    dev = resolve_device("auto")
    return dev.type


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Each bench module names its metric (``pytestmark = pytest.mark.lvm_metric("memory")``); profiles can feed
    some grids to some metrics only.

    ``lvm_case``: the full matrix. ``lvm_shape_case``: each (model, size) once, on meta (counting needs no
    device, dtype or batch). ``lvm_any_batch_case``: the matrix without its batch axis (max-batch search,
    per-instance latency). ``lvm_model_case``: each model once, at its native size."""
    session = metafunc.config.stash[SESSION_KEY]
    marker = metafunc.definition.get_closest_marker("lvm_metric")
    metric = marker.args[0] if marker else None
    key = metric or ""
    if key not in session.metric_cases:
        session.metric_cases[key] = _build_cases(metafunc.config, session.profile, metric)
    cases = session.metric_cases[key]
    if "lvm_case" in metafunc.fixturenames:
        metafunc.parametrize("lvm_case", cases, ids=[c.label for c in cases])
    if "lvm_shape_case" in metafunc.fixturenames:
        shapes = list(dict.fromkeys(BenchCase(c.model, "meta", "fp32", 1, c.img_size) for c in cases))
        metafunc.parametrize("lvm_shape_case", shapes, ids=[c.label for c in shapes])
    if "lvm_any_batch_case" in metafunc.fixturenames:
        series = list(dict.fromkeys(
            BenchCase(c.model, c.device, c.dtype, None, c.img_size, c.options) for c in cases
        ))
        metafunc.parametrize("lvm_any_batch_case", series, ids=[c.label for c in series])
    if "lvm_model_case" in metafunc.fixturenames:
        models = list(dict.fromkeys(
            BenchCase(c.model, "meta", "fp32", 1, c.spec.default_img_size) for c in cases
        ))
        metafunc.parametrize("lvm_model_case", models, ids=[c.label for c in models])


def _build_cases(config: pytest.Config, profile: Profile, metric: str | None = None) -> list[BenchCase]:
    for spec in _device_specs(config):
        _try_device_validate(spec)
    return build_cases(
        profile,
        devices=[display_device(s) for s in _device_specs(config)],
        models=parse_list(config.getoption("--lvm-models")),
        dtypes=parse_list(config.getoption("--lvm-dtype")),
        batch_sizes=parse_int_list(config.getoption("--lvm-batch-sizes"), "--lvm-batch-sizes"),
        img_sizes=parse_int_list(config.getoption("--lvm-img-sizes"), "--lvm-img-sizes"),
        options=ExecOptions(
            channels_last=bool(config.getoption("--lvm-channels-last")),
            compile=config.getoption("--lvm-compile") is not None,
            compile_backend=config.getoption("--lvm-compile") or "inductor",
        ).id_options(),
        metric=metric,
    )


def _try_device_validate(spec: str) -> None:
    """A misspelt device is a usage error; an absent one is only skipped later, with the reason."""
    with contextlib.suppress(DeviceUnavailableError):
        resolve_device(spec)


class Lvm:
    """What a bench needs for one case: the case, the run store, the cached model, pytest-benchmark glue."""

    def __init__(self, session: LvmSession, case: BenchCase) -> None:
        self.session = session
        self.case = case

    @contextmanager
    def record(self, metric: str, phase: str = "inference") -> Iterator[CaseRecorder]:
        """A record is written whatever happens inside. An out-of-memory is recorded as ``oom`` and the bench
        is reported as xfail: a result, not a crash, and visible in pytest's summary."""
        with self.session.store.case(**self.case.identity(metric, phase)) as rec:
            if self.case.spec.overrides:  # a smoke model is a timm architecture with these changes
                rec.provenance["timm_overrides"] = self.case.spec.kwargs
            yield rec
        if rec.status == "oom":
            pytest.xfail(f"out of memory, recorded as status oom: {rec.error}")

    def memory_case(self, mode: str, batch_size: int | None = None) -> MemoryCase:
        case = self.case
        opts = case.exec_options()
        limit = self.session.config.getoption("--lvm-mem-limit")
        _device_or_skip(case.device)
        return MemoryCase(
            model=case.model, device=case.device, dtype=case.dtype,
            batch_size=batch_size or case.batch_size or 1, img_size=case.img_size, mode=mode,
            channels_last=opts.channels_last, compile_backend=opts.compile_backend if opts.compile else None,
            mem_limit_bytes=parse_bytes(limit) if limit else None,
        )

    def model(self) -> LoadedModel:
        return self.session.load(self.case)

    def forward_case(self) -> ForwardCase:
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
        case = self.case
        report = self.session.flops(case.model, case.img_size, case.batch_size or 1)
        loaded = self.model()
        peak = self.session.peak(loaded.device, loaded.dtype, case.dtype)
        out: dict[str, Any] = {"macs": report.macs, "flops": report.flops}
        out.update(efficiency(report.macs, values["latency_ms_p50"], peak["flops_per_s"]))
        out["peak_flops_per_s"] = peak["flops_per_s"]
        return out

    def trace(self, metric: str, fn: Callable[[], Any], values: dict[str, Any]) -> None:
        """With --lvm-trace: a torch.profiler trace of ``fn`` plus scalars of ``values``, after the timed pass."""
        if not self.session.config.getoption("--lvm-trace"):
            return
        from lvmharness.traces import trace, write_scalars

        out = self.session.store.run_dir / "tb" / f"{metric}-{self.case.label}"
        trace(fn, out, self.model().device, worker_name=self.case.label)
        write_scalars(out, {k: v for k, v in values.items() if k in EXTRA_INFO_KEYS}, prefix=f"{metric}/")

    def extra_info(self, benchmark: Any, values: dict[str, Any]) -> None:
        benchmark.extra_info.update({k: values[k] for k in EXTRA_INFO_KEYS if k in values})
        benchmark.extra_info["case_id"] = self.case.label
        benchmark.extra_info["run_id"] = self.session.store.run_id


@pytest.fixture
def lvm(request: pytest.FixtureRequest, lvm_case: BenchCase) -> Lvm:
    return Lvm(request.config.stash[SESSION_KEY], lvm_case)


@pytest.fixture
def lvm_shape(request: pytest.FixtureRequest, lvm_shape_case: BenchCase) -> Lvm:
    return Lvm(request.config.stash[SESSION_KEY], lvm_shape_case)


@pytest.fixture
def lvm_any_batch(request: pytest.FixtureRequest, lvm_any_batch_case: BenchCase) -> Lvm:
    return Lvm(request.config.stash[SESSION_KEY], lvm_any_batch_case)


@pytest.fixture
def lvm_model_only(request: pytest.FixtureRequest, lvm_model_case: BenchCase) -> Lvm:
    return Lvm(request.config.stash[SESSION_KEY], lvm_model_case)


@pytest.fixture(scope="session")
def lvm_train_data(request: pytest.FixtureRequest) -> Callable[[int], DataSplits]:
    """Datasets for training benches, built once per image size for the whole session."""
    choice = request.config.getoption("--lvm-train-dataset")
    root = Path(request.config.getoption("--lvm-data-dir"))
    if choice == "auto":
        choice = "cifar100" if (root / "cifar-100-python" / "train").is_file() else "synthetic"
    cache: dict[int, DataSplits] = {}

    def get(img_size: int) -> DataSplits:
        if img_size not in cache:
            cache[img_size] = build_datasets(choice, data_dir=root, img_size=img_size, synthetic_size=512)
        return cache[img_size]

    return get


@pytest.fixture(scope="session")
def lvm_instance_samples(request: pytest.FixtureRequest) -> tuple[list[Any], str]:
    """Samples for per-instance latency, loaded once: (images, where they came from)."""
    name = request.config.getoption("--lvm-instance-data")
    root = request.config.getoption("--lvm-data-dir")
    try:
        images = raw_samples(name, data_dir=root)
    except DatasetNotFoundError as exc:
        pytest.fail(f"--lvm-instance-data {name}: {exc}", pytrace=False)
    return images, f"{name} validation split under {root}" if name != "synthetic" else "synthetic uint8 images"


@pytest.fixture(scope="session")
def lvm_session(request: pytest.FixtureRequest) -> LvmSession:
    return request.config.stash[SESSION_KEY]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Device-marked tests skip, with the reason, where the device is absent."""
    has = {"cuda": torch.cuda.is_available(), "mps": _try_device("mps") is not None}
    for item in items:
        for name, present in has.items():
            if item.get_closest_marker(name) and not present:
                item.add_marker(pytest.mark.skip(reason=f"needs {name}, which this machine does not have"))


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    session = config.stash.get(SESSION_KEY, None)
    if session is None or not session.used:
        return
    store = session.store
    counts: dict[str, int] = {}
    for rec in store.records:
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    terminalreporter.write_sep("-", "lvmharness")
    terminalreporter.write_line(f"run folder: {store.run_dir}  ({summary})")
    terminalreporter.write_line(f"records:    {store.results_path}")
