"""The lvmharness pytest plugin (entry point ``pytest11``): options, markers and hooks.

Installed with lvmharness, it gives any project the ``lvm`` fixture and the ``--lvm-*`` options; the session state
lives in ``session.py``, the fixture in ``fixture.py``. Loading it imports neither torch nor timm: a project that
merely has lvmharness installed pays nothing until a test asks for ``lvm``.

Markers:
  ``lvm_metric(name)``  the metric a bench module measures; a profile may feed some grids to some metrics only.
  ``lvm_axes(*axes, **fixed)``  the axes of the matrix a bench varies over (default: all of model, device, dtype,
                        batch_size, img_size); each other axis takes its fixed value, or meta / fp32 / every batch
                        size / the model's native size.
"""

from __future__ import annotations

import sys
from typing import Any

import pytest

from lvmharness.bench import parallel
from lvmharness.bench.config import LvmConfig, add_options
from lvmharness.bench.fixture import lvm, lvm_instance_samples, lvm_session, lvm_train_data
from lvmharness.bench.matrix import AXES, project
from lvmharness.bench.session import SESSION_KEY, LvmSession
from lvmharness.core.units import fmt_bytes
from lvmharness.store.records import is_contended

__all__ = ["lvm", "lvm_instance_samples", "lvm_session", "lvm_train_data"]  # fixtures pytest finds here

MARKERS = (
    "lvm_metric(name): the metric a bench module measures (a profile may feed some grids to some metrics only)",
    f"lvm_axes(*axes, **fixed): the axes of the case matrix a bench varies over, of {', '.join(AXES)} (default: "
    "all); the others take their fixed value or a default (meta, fp32, every batch size, the native size)",
)


def pytest_addoption(parser: pytest.Parser) -> None:
    add_options(parser.getgroup("lvmharness", "lvmharness bench matrix"))


def pytest_configure(config: pytest.Config) -> None:
    for line in MARKERS:
        config.addinivalue_line("markers", line)
    session = LvmSession.from_options(LvmConfig.from_namespace(config.option))
    # xdist: first thing, before anything can touch CUDA (a worker is pinned to its GPU here).
    if parallel.is_worker(config):
        session.writer_facts = parallel.configure_worker(config, session)
    else:
        parallel.configure_controller(config, session)
    if any(":" in m for m in session.options.models or ()):
        _bench_folders_on_path(config)
    if session.options.models:
        from lvmharness.models.aliases import ModelError

        try:
            # Checked here, before collection: a typo stops the run with the reason and nothing measured.
            session.check_models()
        except ModelError as exc:
            raise pytest.UsageError(f"--lvm-models: {exc}") from exc
    config.stash[SESSION_KEY] = session
    config.pluginmanager.register(_ShardSelection(), "lvmharness-shard")


def _bench_folders_on_path(config: pytest.Config) -> None:
    """A factory's module (``mymodels:build``) usually sits beside the bench files, whose folders pytest puts on
    sys.path only when it collects them, after the models are checked: make them importable now. Appended, so
    nothing installed is shadowed."""
    for arg in config.args:
        path = (config.invocation_params.dir / arg.split("::")[0]).resolve()
        folder = str(path if path.is_dir() else path.parent)
        if path.exists() and folder not in sys.path:
            sys.path.append(folder)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Parametrize every test that asks for ``lvm`` over its cases (ids are the case labels)."""
    if "lvm" not in metafunc.fixturenames:
        return
    session = metafunc.config.stash[SESSION_KEY]
    metric_marker = metafunc.definition.get_closest_marker("lvm_metric")
    cases = session.cases(metric_marker.args[0] if metric_marker else None)
    axes_marker = metafunc.definition.get_closest_marker("lvm_axes")
    if axes_marker is not None:
        try:
            cases = project(cases, axes_marker.args, axes_marker.kwargs)
        except ValueError as exc:
            raise pytest.UsageError(f"{metafunc.definition.nodeid}: lvm_axes: {exc}") from exc
    metafunc.parametrize("lvm", cases, ids=[c.label for c in cases], indirect=True)


def pytest_collection_finish(session: pytest.Session) -> None:
    """Before anything is measured: warn when the machine is already busy (and keep the load for env.json)."""
    state = session.config.stash.get(SESSION_KEY, None)
    if state is None or session.config.option.collectonly:
        return
    if not any("lvm" in getattr(item, "fixturenames", ()) for item in session.items):
        return
    from lvmharness.core.outputs import OutputPathError, check_output_folder

    try:  # the default --lvm-out was not checked while parsing (see config.add_options)
        check_output_folder(state.options.out)
    except OutputPathError as exc:
        raise pytest.UsageError(f"--lvm-out: {exc}") from None
    warning = state.check_machine_load()
    if warning is not None:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line(f"lvmharness WARNING: {warning}", yellow=True, bold=True)


@pytest.hookimpl(optionalhook=True)
def pytest_configure_node(node: Any) -> None:
    """pytest-xdist, on the controller, per worker: the shared run id, the worker's GPU or cores."""
    parallel.configure_node(node)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_node_collection_finished(node: Any, ids: list[str]) -> None:
    """pytest-xdist, on the controller: refuse lvm cases on a device this run has too few of for its workers."""
    parallel.refuse_collected(node.config, ids)


@pytest.hookimpl(optionalhook=True, tryfirst=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist, on the controller: all cases of a model on one worker unless the user chose --dist."""
    return parallel.make_scheduler(config, log)


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.pluginmanager.hasplugin("xdist"):
        parallel.mark_groups(items)


SHARD_REPORT = pytest.StashKey[list[str]]()


class _ShardSelection:
    """Shard selection runs after every other selection (``-k``, ``-m``, deselects): shards split what remains."""

    @pytest.hookimpl(trylast=True)
    def pytest_collection_modifyitems(self, config: pytest.Config, items: list[pytest.Item]) -> None:
        session = config.stash[SESSION_KEY]
        if session.options.shard is not None:
            config.stash[SHARD_REPORT] = parallel.select_shard(config, items, session, session.options.shard)


def pytest_report_collectionfinish(config: pytest.Config) -> list[str]:
    return config.stash.get(SHARD_REPORT, [])


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """This process is one writer of the run folder: closing it rebuilds the merged results.json / env.json. The
    xdist controller, which writes nothing itself, rebuilds them once its workers are done."""
    state = session.config.stash.get(SESSION_KEY, None)
    if state is not None and state.used:
        state.store.close()
        return
    run = parallel.run_dir(session.config)
    if run is not None:
        from lvmharness.store.run_folder import refresh_env_view, refresh_results_view

        refresh_env_view(run)
        refresh_results_view(run)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int, config: pytest.Config) -> None:
    """Read from the run folder, not from this process: under xdist the workers wrote it (and pytest-benchmark,
    which switches itself off there, has nothing to say)."""
    session = config.stash.get(SESSION_KEY, None)
    run = parallel.run_dir(config)
    if session is None or run is None:
        return
    from lvmharness.store.loading import RECORDS_DIR, RESULTS_FILE, load_records, results_view_current

    records = load_records(run)
    counts: dict[str, int] = {}
    for rec in records:
        counts[rec["status"]] = counts.get(rec["status"], 0) + 1
    summary = ", ".join(f"{n} {s}" for s, n in sorted(counts.items()))
    terminalreporter.write_sep("-", "lvmharness")
    terminalreporter.write_line(f"run folder: {run}  ({summary})")
    if results_view_current(run, records):
        terminalreporter.write_line(f"records:    {run / RESULTS_FILE}")
    else:  # the folder stopped taking writes (read-only, full): the records are in the writers' files only
        terminalreporter.write_line(
            f"records:    {run / RECORDS_DIR}/*.jsonl ({RESULTS_FILE} could not be written: {run} no longer takes "
            "writes; lvm report / compare read the records files as they are)", yellow=True, bold=True)
    tb = run / "tb"
    if tb.is_dir():
        from lvmharness.runtime.traces import trace_bytes

        count, size = trace_bytes(tb)
        terminalreporter.write_line(
            f"traces:     {tb}  ({count} trace files, {fmt_bytes(size)}; --lvm-trace-steps "
            f"{session.options.trace_steps} profiled steps each) — tensorboard --logdir, ui.perfetto.dev or HTA")
    busy = [r for r in records if is_contended(r)]
    if busy:
        terminalreporter.write_line(
            f"CONTENDED:  {len(busy)} record(s) were measured while other processes took the machine; their timings "
            "are not the model's (lvm compare calls them inconclusive):", yellow=True, bold=True)
        for rec in busy[:10]:
            v = rec["values"]
            other = v.get("other_load_cores")
            terminalreporter.write_line(
                f"  {rec['case_id']}: cpu_share {v.get('cpu_share', float('nan')):.2f}"
                + (f", other load {other:.2f} cores" if other is not None else ""), yellow=True)
        if len(busy) > 10:
            terminalreporter.write_line(f"  ... and {len(busy) - 10} more", yellow=True)
