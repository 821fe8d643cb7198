"""Benches on many processes: pytest-xdist workers on one machine, ``--lvm-shard K/N`` across machines.

pytest-xdist (``pytest benches/ -n N``): the controller picks the run id and hands it to every worker, so all
workers write one run folder (the store takes many writers); the controller prints the summary from that folder,
because pytest-benchmark switches itself off under xdist and our records must not depend on it.

- Unless the user chose a ``--dist`` mode, all cases of a model run on one worker, in order, and the model is built
  once there (what ``--dist loadgroup`` does with an ``xdist_group(<model>)`` mark, which each case also carries).
- CUDA (``--lvm-device cuda`` or ``auto`` on a GPU machine): worker *i* sees only the *i*-th GPU the run was given
  (``CUDA_VISIBLE_DEVICES`` set in the worker before CUDA initialises); the physical index is in every record's
  provenance (``parallel.cuda_visible_devices``); the pin is checked (a worker whose CUDA runtime enumerated the
  GPUs before it is refused). More workers than GPUs is refused when lvm cases run on CUDA (two workers timing on
  one GPU measure each other): at once when ``--lvm-device`` is named, else once the workers have collected, so a
  session without lvm cases (``pytest tests/ -n 4`` with lvmharness merely installed) runs untouched.
- CPU: timed numbers on shared cores measure contention. Each worker gets its own slice of the cores this run
  may use (``os.sched_setaffinity``) and as many torch threads as its slice holds (``torch.set_num_threads``),
  both recorded; more workers than cores is refused.

``--lvm-shard K/N``: after ``-k``/``-m`` selection, every process computes the same cost-balanced plan over the
remaining cases (see ``lvmharness.bench.shard``) and keeps shard K. ``--lvm-shard-plan FILE`` writes that plan (each
case's expected cost and shard, the shards' summed costs) as JSON, e.g. with ``--collect-only`` to inspect it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import statistics
from pathlib import Path
from typing import Any

import pytest

from lvmharness.bench.session import SESSION_KEY, LvmSession
from lvmharness.bench.shard import Shard, case_cost, imbalance, loads, plan
from lvmharness.core.vocab import DTYPE_NAMES

# Keys of xdist's workerinput (controller -> worker), and of the per-writer provenance.
RUN_ID = "lvm_run_id"
CUDA = "lvm_cuda_visible_devices"  # this worker's GPU ("3"), or None when the run does not use CUDA
CUDA_GIVEN = "lvm_cuda_given"  # the GPUs the run was given, before pinning ("0,1,2,3" or "all:4")
CPUS = "lvm_cpus"  # this worker's cores, or None when the run does not use the CPU for timing
WORKERS = "lvm_workers"


def _explicit_devices(config: pytest.Config) -> bool:
    """Whether the user named ``--lvm-device`` on the command line (then lvm cases are the point of the run)."""
    args = getattr(getattr(config, "invocation_params", None), "args", ()) or ()
    return any(a == "--lvm-device" or a.startswith("--lvm-device=") for a in args)


def _xdist_workers(config: pytest.Config) -> int:
    """Number of xdist workers this controller starts (0 when not distributing)."""
    if not config.pluginmanager.hasplugin("xdist") or getattr(config.option, "dist", "no") == "no":
        return 0
    return len(getattr(config.option, "tx", None) or [])


def is_worker(config: pytest.Config) -> bool:
    return hasattr(config, "workerinput")


def _uses(session: LvmSession, kind: str) -> bool:
    """Whether the matrix has devices of ``kind`` ('cuda' or 'cpu'); 'auto' counts as what it resolves to here."""
    for spec in session.options.devices:
        if spec == "auto":
            import torch

            spec = "cuda" if torch.cuda.is_available() else "cpu"
        if spec.split(":")[0] == kind:
            return True
    return False


def _cuda_given() -> list[str]:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return [d.strip() for d in visible.split(",") if d.strip()]
    import torch

    return [str(i) for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


def _usable_cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


@dataclasses.dataclass
class ControllerPlan:
    run_id: str
    workers: int
    gpus: list[str | None] | None  # one per worker (None past the last GPU), or None
    cpu_slices: list[list[int]] | None  # one per worker, or None
    group_devices: tuple[str, ...] | None  # device tokens of case ids, when cases are grouped by model
    refuse: dict[str, str] = dataclasses.field(default_factory=dict)  # device kind -> why its lvm cases cannot run


PLAN_KEY = pytest.StashKey[ControllerPlan]()


def configure_controller(config: pytest.Config, session: LvmSession) -> None:
    """On the xdist controller: one run id for all workers, loadgroup, a GPU or a core slice per worker."""
    workers = _xdist_workers(config)
    if not workers:
        return
    from lvmharness.store.run_ids import new_run_id

    run_id = session.options.run_id or new_run_id()
    session.options = dataclasses.replace(session.options, run_id=run_id)
    group = config.option.dist == "load" and not any(
        a == "--dist" or a.startswith("--dist=") for a in config.invocation_params.args
    )
    gpus: list[str | None] | None = None
    cpu_slices: list[list[int]] | None = None
    refuse: dict[str, str] = {}
    explicit = _explicit_devices(config)
    if _uses(session, "cuda"):
        for spec in session.options.devices:
            if re.fullmatch(r"cuda:[1-9]\d*", spec):
                raise pytest.UsageError(
                    f"--lvm-device {spec} with -n: each xdist worker sees only its own GPU, as cuda:0; "
                    "use --lvm-device cuda (worker i gets the i-th GPU)"
                )
        given = _cuda_given()
        if workers > len(given):
            refuse["cuda"] = (
                f"-n {workers} with CUDA needs one GPU per worker, and this run was given {len(given)} "
                f"({','.join(given) or 'none'}); use -n {max(len(given), 1)} or fewer: two workers timing on one GPU "
                "measure each other"
            )
            if explicit:
                raise pytest.UsageError(refuse["cuda"])
        # Workers past the last GPU keep the controller's view; they may run tests, never lvm CUDA cases.
        gpus = [*given[:workers], *[None] * (workers - len(given))]
    if _uses(session, "cpu"):
        cores = _usable_cores()
        if workers > len(cores):
            refuse["cpu"] = (
                f"-n {workers} on {len(cores)} usable core(s): timed CPU benches would share cores and measure each "
                f"other; use -n {len(cores)} or fewer (each worker then gets cores of its own and as many torch "
                "threads)"
            )
            if explicit:
                raise pytest.UsageError(refuse["cpu"])
        else:
            per = len(cores) // workers
            cpu_slices = [cores[i * per:(i + 1) * per] for i in range(workers)]
    devices = tuple(sorted({d.replace(":", "") for d in session.devices} | {"meta"}))
    config.stash[PLAN_KEY] = ControllerPlan(run_id, workers, gpus, cpu_slices, devices if group else None, refuse)


def configure_node(node: Any) -> None:
    """xdist's ``pytest_configure_node``: what this worker gets (called on the controller, once per worker)."""
    controller = node.config.stash.get(PLAN_KEY, None)
    if controller is None:
        return
    m = re.search(r"(\d+)$", str(node.gateway.id))
    index = int(m.group(1)) % controller.workers if m else 0
    node.workerinput[RUN_ID] = controller.run_id
    node.workerinput[WORKERS] = controller.workers
    if controller.gpus is not None:
        node.workerinput[CUDA] = controller.gpus[index]
        given = sum(g is not None for g in controller.gpus)
        node.workerinput[CUDA_GIVEN] = os.environ.get("CUDA_VISIBLE_DEVICES") or f"all:{given}"
    if controller.cpu_slices is not None:
        node.workerinput[CPUS] = controller.cpu_slices[index]


def configure_worker(config: pytest.Config, session: LvmSession) -> dict[str, Any]:
    """On an xdist worker, before anything touches CUDA: take the run id, pin the GPU, take the core slice.
    Returns the facts to put in every record's provenance."""
    wi: dict[str, Any] = config.workerinput  # type: ignore[attr-defined]
    facts: dict[str, Any] = {"xdist_worker": wi.get("workerid"), "xdist_workers": wi.get(WORKERS)}
    # pytest-benchmark switches itself off under xdist, and then warns about every bench that took its fixture;
    # the rounds are timed by lvmharness's own loop and recorded, so the warning would only be noise.
    config.addinivalue_line("filterwarnings", "ignore:Benchmark fixture was not used at all in this test")
    if wi.get(RUN_ID):
        session.options = dataclasses.replace(session.options, run_id=wi[RUN_ID])
    if wi.get(CUDA) is not None:
        import torch

        from lvmharness.runtime.machine import PINNED_FROM_ENV

        late = ("CUDA was initialised in this xdist worker before lvmharness could pin it to its GPU "
                "(a plugin or conftest touched CUDA at import{}); run without -n or move that code into a fixture")
        if torch.cuda.is_initialized():
            raise pytest.UsageError(late.format(""))
        os.environ["CUDA_VISIBLE_DEVICES"] = wi[CUDA]
        # An earlier torch.cuda.is_available() leaves torch uninitialised but has the CUDA runtime enumerate the
        # devices (cudaGetDeviceCount, torch/cuda/__init__.py): the variable set now is then ignored and the
        # worker still sees every GPU. Ask the runtime how many it sees now: pinned, that is one.
        seen = _runtime_device_count()
        if seen > 1 and _given_count(wi[CUDA_GIVEN]) > 1:
            raise pytest.UsageError(late.format(f", e.g. torch.cuda.is_available(); it still sees {seen} GPUs"))
        os.environ[PINNED_FROM_ENV] = wi[CUDA_GIVEN]
        facts["cuda_visible_devices"] = wi[CUDA]
    if wi.get(CPUS):
        import torch

        cpus = list(wi[CPUS])
        with contextlib.suppress(AttributeError, OSError):
            os.sched_setaffinity(0, cpus)
        torch.set_num_threads(len(cpus))
        # Processes this worker starts (memory cases run in fresh ones) take the same share.
        os.environ["OMP_NUM_THREADS"] = str(len(cpus))
        facts.update(cpu_affinity=cpus, torch_threads=len(cpus))
    return facts


def _runtime_device_count() -> int:
    """The CUDA runtime's device count (cudaGetDeviceCount, uncached: not torch.cuda.device_count())."""
    import torch

    return int(torch._C._cuda_getDeviceCount()) if torch.cuda._is_compiled() else 0


def _given_count(given: str) -> int:
    """GPUs the run was given, from CUDA_GIVEN ("0,1,2" or "all:4")."""
    return int(given[4:]) if given.startswith("all:") else len([d for d in given.split(",") if d.strip()])


# A case id's device and dtype tokens (``smoke_vit-cuda0-bf16-b1-32``: see ``store.records.case_label``).
_CASE_DEVICE = re.compile(rf"\[[^\]]*?(?:^|-)(cpu|cuda\d*)-(?:{'|'.join(DTYPE_NAMES)})(?:-|\])")


def refuse_collected(config: pytest.Config, ids: list[str]) -> None:
    """On the xdist controller, when a worker has collected: refuse the run when lvm cases landed on a device kind
    this run cannot give each worker one of (more workers than GPUs or cores). The refusal waits for collection,
    because a session that collects no lvm case there (``pytest tests/ -n 4`` in a project that merely has
    lvmharness installed) must run as if lvmharness were not there."""
    controller = config.stash.get(PLAN_KEY, None)
    if controller is None or not controller.refuse:
        return
    kinds = set()
    for nodeid in ids:
        m = _CASE_DEVICE.search(nodeid)
        if m is not None:
            kinds.add("cuda" if m.group(1).startswith("cuda") else "cpu")
    for kind in sorted(kinds & set(controller.refuse)):
        pytest.exit(f"lvmharness: {controller.refuse[kind]}", returncode=pytest.ExitCode.USAGE_ERROR)


def _case_and_metric(item: pytest.Item) -> tuple[Any, str | None]:
    callspec = getattr(item, "callspec", None)
    case = callspec.params.get("lvm") if callspec is not None else None
    marker = item.get_closest_marker("lvm_metric")
    return case, (marker.args[0] if marker else None)


def mark_groups(items: list[pytest.Item]) -> None:
    """All cases of one model on one xdist worker (``--dist loadgroup``): the model is built once there."""
    for item in items:
        case, _ = _case_and_metric(item)
        if case is not None:
            item.add_marker(pytest.mark.xdist_group(f"lvm-{case.model}"))


def model_scope(nodeid: str, devices: tuple[str, ...]) -> str:
    """The scheduling unit of a node id: ``lvm-model:<model>`` for a bench case (its id is ``<model>-<device>-...``,
    devices as they appear in ids), the node id itself for anything else. A ``@group`` suffix (xdist's own
    ``loadgroup`` tagging) wins."""
    if nodeid.rfind("@") > nodeid.rfind("]"):
        return nodeid.rsplit("@", 1)[1]
    if not nodeid.endswith("]") or "[" not in nodeid:
        return nodeid
    label = nodeid[nodeid.rindex("[") + 1:-1]
    cuts = [i for i in (label.find(f"-{d}-") for d in devices) if i > 0]
    cuts += [len(label) - len(d) - 1 for d in devices if label.endswith(f"-{d}")]
    return f"lvm-model:{label[:min(cuts)]}" if cuts else nodeid


def make_scheduler(config: pytest.Config, log: Any) -> Any:
    """xdist's ``pytest_xdist_make_scheduler``: with ``-n`` and no ``--dist`` of the user's, all cases of a model go
    to one worker, in order (the model is built once there). This is what ``--dist loadgroup`` with an
    ``xdist_group`` mark per model would do; the grouping is computed from the ids here because xdist's worker-side
    tagging writes a node attribute that pytest 9.2 no longer reads."""
    controller = config.stash.get(PLAN_KEY, None)
    if controller is None or controller.group_devices is None:
        return None
    from xdist.scheduler import LoadScopeScheduling

    devices = controller.group_devices

    class ModelScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return model_scope(nodeid, devices)

    return ModelScheduling(config, log)


def _plan_key(item: pytest.Item) -> str:
    """The node id without the ``@group`` suffix xdist's loadgroup adds: plans must not depend on -n."""
    nodeid = item.nodeid
    for mark in item.iter_markers("xdist_group"):
        suffix = f"@{mark.args[0] if mark.args else mark.kwargs.get('name', 'default')}"
        if nodeid.endswith(suffix):
            return nodeid[: -len(suffix)]
    return nodeid


def costs_of(items: list[pytest.Item], session: LvmSession) -> dict[str, float]:
    """Expected cost of each item (see ``lvmharness.bench.shard.case_cost``): MACs counted once per (model, size) on the
    meta device. An item with no case, or whose count fails (that case will report why when it runs), costs the
    median of the others."""
    costs: dict[str, float | None] = {}
    for item in items:
        case, metric = _case_and_metric(item)
        cost = None
        if case is not None:
            with contextlib.suppress(Exception):
                macs = session.flops(case.model, case.img_size, 1).macs
                batch = case.batch_size or (session.profile.offline_batch if metric == "instance" else 1)
                cost = case_cost(metric, macs, batch)
        costs[_plan_key(item)] = cost
    known = [c for c in costs.values() if c is not None]
    fill = statistics.median(known) if known else 1.0
    return {k: (c if c is not None else fill) for k, c in costs.items()}


def select_shard(config: pytest.Config, items: list[pytest.Item], session: LvmSession, shard: Shard) -> list[str]:
    """Keep shard K of the items (the others are deselected); returns lines for the collection report."""
    costs = costs_of(items, session)
    assignment = plan(costs, shard.count)
    keep = [i for i in items if assignment[_plan_key(i)] == shard.index]
    drop = [i for i in items if assignment[_plan_key(i)] != shard.index]
    if drop:
        config.hook.pytest_deselected(items=drop)
    items[:] = keep
    shard_loads = loads(costs, assignment, shard.count)
    total = sum(shard_loads) or 1.0
    if session.options.shard_plan is not None:
        from lvmharness.core.fileio import atomic_write_json

        atomic_write_json(Path(session.options.shard_plan), {
            "shard": str(shard),
            "cost_unit": "MACs x batch x metric weight",
            "cases": [{"id": k, "cost": costs[k], "shard": assignment[k]} for k in sorted(costs)],
            "shard_costs": shard_loads,
            "imbalance_max_over_min": imbalance(shard_loads),
        })
    return [
        f"lvm shard {shard}: {len(keep)} of {len(costs)} cases, {shard_loads[shard.index - 1] / total:.1%} of the "
        f"expected cost (largest/smallest shard {imbalance(shard_loads):.2f}x)"
    ]


def run_dir(config: pytest.Config) -> Path | None:
    """The run folder of this session if it exists (on an xdist controller, the one its workers wrote)."""
    session = config.stash.get(SESSION_KEY, None)
    if session is None:
        return None
    if session.used:
        return session.store.run_dir
    controller = config.stash.get(PLAN_KEY, None)
    if controller is None:
        return None
    path = Path(session.options.out) / controller.run_id
    return path if path.is_dir() else None
