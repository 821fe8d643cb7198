"""State of one pytest session: the parsed options, the case matrix, the run store and the cached model.

Nothing here imports torch at module level: the plugin is loaded by every pytest run in an environment that has
lvmharness installed, and only a run that actually measures should pay for PyTorch.
"""

from __future__ import annotations

import dataclasses
import gc
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from lvmharness.bench.config import LvmConfig
from lvmharness.bench.matrix import BenchCase, Profile, build_cases, get_profile, spec_of
from lvmharness.measure.budget import TimingConfig

if TYPE_CHECKING:
    import torch

    from lvmharness.measure.flops import FlopReport
    from lvmharness.measure.latency import Timer
    from lvmharness.measure.peak import ProbeCache
    from lvmharness.runtime.execution import Prepared
    from lvmharness.store.run_folder import RunStore


DEVICE_OPTION = "--lvm-device"  # how error messages name the device option in this front end


@dataclass
class LoadedModel:
    timm_name: str
    prepared: Prepared  # the model with dtype/AMP, channels_last, compile applied: what benches measure
    device: torch.device
    dtype: torch.dtype  # the compute dtype (autocast's under AMP)
    timer: Timer  # one per model: its warm-up memory is per (model, input shape)

    @property
    def model(self) -> torch.nn.Module:
        return self.prepared.model


def resolve_or_skip(spec: str) -> torch.device:
    """The device of a case, or a pytest skip with the reason when this machine does not have it."""
    from lvmharness.runtime.devices import DeviceUnavailableError, resolve_device

    try:
        return resolve_device(spec, option=DEVICE_OPTION)
    except DeviceUnavailableError as exc:
        pytest.skip(str(exc))


def display_device(spec: str) -> str:
    """'auto' becomes the concrete device type in ids, so ids say where a case ran."""
    if spec != "auto":
        return spec
    from lvmharness.runtime.devices import resolve_device

    return resolve_device("auto", option=DEVICE_OPTION).type


@dataclass
class LvmSession:
    """Per-pytest-session state: options, the run store (created on first record), the model cache."""

    options: LvmConfig
    profile: Profile
    timing: TimingConfig
    _cases: dict[str, list[BenchCase]] = field(default_factory=dict)  # per bench metric ("" = every grid)
    _store: RunStore | None = None
    _env: dict[str, Any] | None = None
    _flops: dict[tuple[str, int, int], FlopReport] = field(default_factory=dict)
    _probes: ProbeCache | None = None
    _cached_key: tuple[Any, ...] | None = None
    _cached: LoadedModel | None = None
    load_at_start: dict[str, Any] | None = None  # other processes' load before anything was measured
    # Facts about this process that hold for every record it writes (an xdist worker's GPU and core share).
    writer_facts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_options(cls, options: LvmConfig) -> LvmSession:
        profile = get_profile(options.profile)
        timing = profile.timing
        if options.budget_s is not None:
            timing = dataclasses.replace(timing, budget_s=options.budget_s)
        return cls(options, profile, timing)

    def check_models(self) -> None:
        """Resolve ``--lvm-models`` now, so a typo stops the run before collection (imports timm)."""

        for model in self.options.models or ():
            spec_of(model)

    @property
    def devices(self) -> list[str]:
        """The devices of the matrix as they appear in case ids ('auto' resolved to the device type)."""
        return [display_device(d) for d in self.options.devices]

    def cases(self, metric: str | None = None) -> list[BenchCase]:
        """The matrix for the bench measuring ``metric`` (profiles feed some grids to some metrics only)."""
        key = metric or ""
        if key not in self._cases:
            from lvmharness.runtime.execution import ExecOptions

            opts = self.options
            exec_options = ExecOptions(
                channels_last=opts.channels_last, compile=opts.compile_backend is not None,
                compile_backend=opts.compile_backend or "inductor",
            )
            self._cases[key] = build_cases(
                self.profile, devices=self.devices, models=opts.models, dtypes=opts.dtypes,
                batch_sizes=opts.batch_sizes, img_sizes=opts.img_sizes, options=exec_options.id_options(),
                metric=metric,
            )
        return self._cases[key]

    @property
    def store(self) -> RunStore:
        if self._store is None:
            from lvmharness.runtime import envinfo, machine
            from lvmharness.runtime.devices import DeviceUnavailableError, resolve_device
            from lvmharness.store.run_folder import RunStore

            facts = self.writer_facts
            self._store = RunStore(self.options.out, self.options.run_id, writer=facts.get("xdist_worker"),
                                   fingerprint=machine.fingerprint, provenance={"parallel": facts} if facts else None)
            devices = []
            for spec in self.options.devices:
                try:
                    devices.append(resolve_device(spec, option=DEVICE_OPTION))
                except DeviceUnavailableError:
                    continue
            self._env = {**envinfo.collect(devices), "profile": self.profile.name, "timing": self.timing.__dict__}
            if self.load_at_start is not None:
                self._env["machine_load_at_start"] = self.load_at_start
            if facts:
                self._env["parallel"] = facts
            self._store.write_env(self._env)
        return self._store

    @property
    def used(self) -> bool:
        return self._store is not None

    def flops(self, model: str, img_size: int, batch_size: int) -> FlopReport:
        """Forward MACs of a case, counted once on the meta device."""
        from lvmharness.measure.flops import analyze

        key = (model, img_size, batch_size)
        if key not in self._flops:
            self._flops[key] = analyze(model, img_size=img_size, batch_size=batch_size, backward=False)
        return self._flops[key]

    def _roofs(self) -> ProbeCache:
        if self._probes is None:
            from lvmharness.measure.peak import ProbeCache  # imports torch: the plugin loads without it

            self._probes = ProbeCache(on_new=self._record_probes)
        return self._probes

    def _record_probes(self) -> None:
        """Every probe of this run goes into env.json as soon as it is made."""
        store = self.store
        assert self._env is not None and self._probes is not None
        if self._probes.peaks:
            self._env["peak_flops_per_s"] = {k: v["flops_per_s"] for k, v in self._probes.peaks.items()}
            self._env["peak_probes"] = self._probes.peaks
        if self._probes.bandwidths:
            self._env["peak_bytes_per_s"] = {k: v["bytes_per_s"] for k, v in self._probes.bandwidths.items()}
            self._env["bandwidth_probes"] = self._probes.bandwidths
        store.write_env(self._env)

    def peak(self, device: torch.device, dtype: torch.dtype) -> dict[str, Any]:
        """Peak FLOP/s for (device, compute dtype, TF32 state): best of matmul and convolution probes or the
        theoretical peak, probed once per run and recorded in env.json."""
        return self._roofs().compute(device, dtype)

    def bandwidth(self, device: torch.device) -> dict[str, Any]:
        """Measured copy bandwidth of a device (the roofline's memory roof), probed once per run, in env.json."""
        return self._roofs().memory(device)

    def check_machine_load(self, seconds: float = 0.5) -> str | None:
        """Probe other processes' load on our cores before the run measures anything; a warning when busy."""
        import torch

        from lvmharness.measure.contention import machine_load

        load = machine_load(torch.get_num_threads(), seconds)
        self.load_at_start = load.provenance()
        if not load.contended:
            return None
        return (f"the machine is already busy: other processes kept {load.other_load_cores:.2f} of {load.cores} "
                f"cores busy over {seconds:.1f} s before the run started; timed cases measured now will be flagged "
                "'contended' and their latencies are not the model's")

    def release(self) -> None:
        """Drop the cached model and give the allocator's cached blocks back, so an isolated child (memory
        cases) finds the device as free as this process can leave it."""
        self._cached = self._cached_key = None
        gc.collect()
        import sys

        torch_mod = sys.modules.get("torch")
        if torch_mod is not None and torch_mod.cuda.is_initialized():
            torch_mod.cuda.empty_cache()

    def load(self, case: BenchCase) -> LoadedModel:
        """The case's model, prepared (dtype, channels_last, compile) on its device; one model in memory at a time."""
        from lvmharness.measure.latency import Timer
        from lvmharness.models.build import create_model
        from lvmharness.runtime.devices import DeviceUnavailableError
        from lvmharness.runtime.execution import Prepared, check_dtype_mode

        key = (case.model, case.device, case.dtype, case.img_size, case.options)
        if self._cached_key == key and self._cached is not None:
            return self._cached
        # Large models × devices would not fit otherwise.
        self._cached = self._cached_key = None
        gc.collect()
        device = resolve_or_skip(case.device)
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


SESSION_KEY = pytest.StashKey[LvmSession]()
