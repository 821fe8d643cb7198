"""The report's PNG plots of latency and memory (matplotlib, Agg backend), and the figure saver every PNG plot of
the report goes through. A plot function returns its name, or ``None`` when the runs hold no data for it.

Torch-free; matplotlib is imported when a plot is drawn, so ``lvm report --help`` stays light.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

from lvmharness.core.stats import loglog_slope
from lvmharness.core.units import to_mib
from lvmharness.report import busy as report_busy
from lvmharness.report.records import Record, ok
from lvmharness.store.records import is_contended


class Plots:
    """Saves figures as ``<out>/<name>.png`` and remembers what each drew."""

    def __init__(self, out: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")  # files only: no display, before pyplot is imported
        self.out = out
        self.files: dict[str, Path] = {}
        # What each saved figure drew, read back from its artists: every line and marker series (label, x, y,
        # hollow or not) and every text on it. Tests hold the charts to what they show.
        self.drawn: dict[str, dict[str, Any]] = {}

    def save(self, name: str, fig: Any) -> Path:
        import matplotlib.pyplot as plt

        self.drawn[name] = {
            "series": [{"label": str(line.get_label()), "x": [float(v) for v in line.get_xdata()],
                        "y": [float(v) for v in line.get_ydata()], "line": line.get_linestyle() not in ("None", ""),
                        "hollow": str(line.get_markerfacecolor()) == "none"}
                       for ax in fig.axes for line in ax.get_lines()],
            "texts": [t.get_text() for ax in fig.axes for t in ax.texts] + [ax.get_title() for ax in fig.axes],
        }
        path = self.out / f"{name}.png"
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        self.files[name] = path
        return path


def plain_log_axes(ax: Any) -> None:
    """Log axes with plain tick labels (2, 5, 10 rather than 2×10⁰)."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            fmt = ScalarFormatter()
            fmt.set_scientific(False)
            axis.set_major_formatter(fmt)
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_minor_formatter(NullFormatter())


def draw_contended(ax: Any, points: list[tuple[float, float]]) -> None:
    """Contended points hollow and grey, outside every line, with their count on the chart."""
    if not points:
        return
    ax.plot([p[0] for p in points], [p[1] for p in points], linestyle="none", marker="o", markerfacecolor="none",
            color=report_busy.COLOR, label=f"contended ({len(points)})")
    ax.text(0.01, 0.01, report_busy.note(len(points)), transform=ax.transAxes, fontsize=7, color="#555555",
            va="bottom")


def plot_latency_vs_batch(records: list[Record], plots: Plots) -> str | None:
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    busy: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in ok(records, "latency"):
        name = f"{r['alias']} {r['device']} {r['dtype']} {r['img_size']}px"
        (busy if is_contended(r) else series)[name].append(
            (r["batch_size"], r["values"]["latency_ms_p50"]))
    shown = {k for k in set(series) | set(busy) if len({b for b, _ in series[k] + busy[k]}) >= 2}
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in sorted(shown):
        if series[name]:  # the line joins clean points only
            pts = sorted(series[name])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    draw_contended(ax, [p for name in sorted(shown) for p in busy[name]])
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="forward latency p50 (ms)",
           title="Latency vs batch size")
    plain_log_axes(ax)
    ax.legend(fontsize=7)
    plots.save("latency_vs_batch", fig)
    return "latency_vs_batch"


def plot_latency_vs_resolution(records: list[Record], plots: Plots) -> tuple[str | None, dict[str, float]]:
    """The plot's name and the fitted exponent of latency against pixels per series."""
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    busy: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in ok(records, "latency"):
        if r["batch_size"] == 1:
            (busy if is_contended(r) else series)[f"{r['alias']} {r['device']} {r['dtype']}"].append(
                (r["img_size"], r["values"]["latency_ms_p50"]))
    shown = {k for k in set(series) | set(busy) if len({s for s, _ in series[k] + busy[k]}) >= 2}
    if not shown:
        return None, {}
    exps: dict[str, float] = {}
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in sorted(shown):
        pts = sorted(series[name])
        if not pts:
            continue
        # The exponent is fitted to clean points only, and only where two sizes are clean.
        k = loglog_slope((s * s, ms) for s, ms in pts) if len({s for s, _ in pts}) >= 2 else None
        if k is not None:
            exps[name] = k
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o",
                label=f"{name}: latency ~ pixels^{k:.2f}" if k is not None else name)
    draw_contended(ax, [p for name in sorted(shown) for p in busy[name]])
    ax.set(xscale="log", yscale="log", xlabel="input side (px)", ylabel="latency p50 at batch 1 (ms)",
           title="Latency vs resolution (fitted exponent vs pixels)")
    plain_log_axes(ax)
    ax.legend(fontsize=7)
    plots.save("latency_vs_resolution", fig)
    return "latency_vs_resolution", exps


def plot_memory_vs_batch(records: list[Record], plots: Plots) -> str | None:
    """CUDA allocated vs reserved peaks where the runs have them, else the CPU peak RSS of each case."""
    import matplotlib.pyplot as plt

    rows = [r for r in records if r["metric"].startswith("memory_") and r["status"] == "ok"]
    gpu = [r for r in rows if "mem_allocated_peak_bytes" in r["values"]]
    cpu = [r for r in rows if "rss_peak_delta_bytes" in r["values"]]
    if not gpu and not cpu:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    groups: dict[str, list[Record]] = defaultdict(list)
    for r in gpu or cpu:
        groups[f"{r['alias']} {r['metric'].removeprefix('memory_')} {r['img_size']}px"].append(r)
    for name, rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["batch_size"])
        xs = [r["batch_size"] for r in rs]
        if gpu:
            line = ax.plot(xs, [to_mib(r["values"]["mem_allocated_peak_bytes"]) for r in rs], marker="o",
                           label=f"{name} allocated")
            ax.plot(xs, [to_mib(r["values"]["mem_reserved_peak_bytes"]) for r in rs], marker="s", linestyle="--",
                    color=line[0].get_color(), label=f"{name} reserved")
        else:
            ax.plot(xs, [to_mib(r["values"]["rss_peak_delta_bytes"]) for r in rs], marker="o",
                    label=f"{name} RSS peak")
    ax.set(xscale="log", xlabel="batch size", ylabel="peak memory (MiB)",
           title="Memory vs batch size" + (" (CUDA allocated vs reserved)" if gpu else " (CPU peak RSS of the case)"))
    plain_log_axes(ax)
    ax.legend(fontsize=7)
    plots.save("memory_vs_batch", fig)
    return "memory_vs_batch"
