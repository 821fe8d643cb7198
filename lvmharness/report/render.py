"""``lvm report RUN_DIR [-o OUT]``: a self-contained HTML page, PNG plots and a CSV from one or more runs.

The page opens with interactive plotly charts (plotly.js embedded: it works offline; see
:mod:`lvmharness.report.charts`) — latency and throughput vs batch, latency vs resolution, time by layer type —
and the machine written for people; the PNG plots follow.

Plots: latency vs batch size; latency vs resolution with the fitted scaling exponent per model; memory
(allocated vs reserved, or peak RSS on CPU) vs batch size; accuracy vs GMACs and vs latency with the Pareto front.
A section without data says so instead of failing.
"""

from __future__ import annotations

import argparse
import base64
import csv
import html
import math
import sys
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lvmharness.core.argtypes import output_folder
from lvmharness.core.memory_categories import CATEGORIES
from lvmharness.core.stats import loglog_slope
from lvmharness.report import busy as report_busy
from lvmharness.report.charts import interactive_html, machine_line
from lvmharness.store import keys
from lvmharness.store.results import load_env, load_records

# Identity, then the columns timm's benchmark CSV uses (derived here), then every value key declared for the CSV
# in ``lvmharness.store.keys`` (in table order), then the error text.
IDENTITY_COLUMNS = ("case_id", "metric", "model", "alias", "family", "device", "dtype", "batch_size", "img_size",
                    "phase", "status")
DERIVED_COLUMNS = ("param_count", "gmacs", "infer_step_time", "infer_samples_per_sec", "train_samples_per_sec")
CSV_COLUMNS = (*IDENTITY_COLUMNS, *DERIVED_COLUMNS, *keys.CSV_KEYS, "error")


def load_runs(paths: Sequence[Path | str]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    records: list[dict[str, Any]] = []
    envs: list[dict[str, Any]] = []
    for p in paths:
        path = Path(p)
        records += load_records(path)
        env = load_env(path)
        if env is not None:
            envs.append(env)
    return records, envs


def _static_by_model(records: list[dict[str, Any]]) -> dict[tuple[str, int | None], dict[str, float]]:
    """params and GMACs per image per (model, size), from flops records or the latency records' own counts."""
    out: dict[tuple[str, int | None], dict[str, float]] = {}
    for r in records:
        v = r["values"]
        key = (r["alias"], r["img_size"])
        if r["status"] != "ok":
            continue
        if r["metric"] == "flops":
            out.setdefault(key, {}).update(params=v["params"], gmacs=v["macs"] / 1e9)
        elif r["metric"] == "latency" and "macs" in v and r["batch_size"]:
            out.setdefault(key, {}).setdefault("gmacs", v["macs"] / r["batch_size"] / 1e9)
        elif r["metric"] == "train_result":
            out.setdefault(key, {}).setdefault("params", v.get("params"))
            out.setdefault(key, {}).setdefault("gmacs", v.get("gmacs"))
    return out


def csv_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    static = _static_by_model(records)
    rows = []
    for r in records:
        v = r["values"]
        s = static.get((r["alias"], r["img_size"]), {})
        params = v.get("params", s.get("params"))
        row: dict[str, Any] = {k: r.get(k) for k in CSV_COLUMNS if k in r}
        row.update({
            "param_count": round(params / 1e6, 3) if params else None,
            "gmacs": round(s["gmacs"], 3) if s.get("gmacs") else None,
            "infer_step_time": v.get("latency_ms_p50"),
            "infer_samples_per_sec": v.get("throughput_img_s") if r["metric"] == "latency" else None,
            "train_samples_per_sec": (
                v.get("throughput_img_s") if r["metric"] in ("train_epoch", "train_steps") else None
            ),
        })
        for key in CSV_COLUMNS:
            if key not in row and key in v:
                row[key] = v[key]
        rows.append({k: row.get(k) for k in CSV_COLUMNS})
    return rows


def pareto_front(points: Sequence[tuple[float, float, str]]) -> list[tuple[float, float, str]]:
    """Points not dominated by another with lower-or-equal cost and higher-or-equal accuracy."""
    front = []
    best = -math.inf
    for cost, acc, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc, name))
            best = acc
    return front


class _Plots:
    def __init__(self, out: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
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


def _plain_log_axes(ax: Any) -> None:
    """Log axes with plain tick labels (2, 5, 10 rather than 2×10⁰)."""
    from matplotlib.ticker import LogLocator, NullFormatter, ScalarFormatter

    for axis in (ax.xaxis, ax.yaxis):
        if axis.get_scale() == "log":
            fmt = ScalarFormatter()
            fmt.set_scientific(False)
            axis.set_major_formatter(fmt)
            axis.set_major_locator(LogLocator(subs=(1.0, 2.0, 5.0)))
            axis.set_minor_formatter(NullFormatter())


def _ok(records: list[dict[str, Any]], metric: str) -> list[dict[str, Any]]:
    return [r for r in records if r["metric"] == metric and r["status"] == "ok"]


def _draw_contended(ax: Any, points: list[tuple[float, float]]) -> None:
    """Contended points hollow and grey, outside every line, with their count on the chart."""
    if not points:
        return
    ax.plot([p[0] for p in points], [p[1] for p in points], linestyle="none", marker="o", markerfacecolor="none",
            color=report_busy.COLOR, label=f"contended ({len(points)})")
    ax.text(0.01, 0.01, report_busy.note(len(points)), transform=ax.transAxes, fontsize=7, color="#555555",
            va="bottom")


def plot_latency_vs_batch(records: list[dict[str, Any]], plots: _Plots) -> str | None:
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    busy: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in _ok(records, "latency"):
        name = f"{r['alias']} {r['device']} {r['dtype']} {r['img_size']}px"
        (busy if report_busy.is_contended(r) else series)[name].append(
            (r["batch_size"], r["values"]["latency_ms_p50"]))
    shown = {k for k in set(series) | set(busy) if len({b for b, _ in series[k] + busy[k]}) >= 2}
    if not shown:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for name in sorted(shown):
        if series[name]:  # the line joins clean points only
            pts = sorted(series[name])
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=name)
    _draw_contended(ax, [p for name in sorted(shown) for p in busy[name]])
    ax.set(xscale="log", yscale="log", xlabel="batch size", ylabel="forward latency p50 (ms)",
           title="Latency vs batch size")
    _plain_log_axes(ax)
    ax.legend(fontsize=7)
    plots.save("latency_vs_batch", fig)
    return "latency_vs_batch"


def plot_latency_vs_resolution(records: list[dict[str, Any]], plots: _Plots) -> tuple[str | None, dict[str, float]]:
    import matplotlib.pyplot as plt

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    busy: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in _ok(records, "latency"):
        if r["batch_size"] == 1:
            (busy if report_busy.is_contended(r) else series)[f"{r['alias']} {r['device']} {r['dtype']}"].append(
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
    _draw_contended(ax, [p for name in sorted(shown) for p in busy[name]])
    ax.set(xscale="log", yscale="log", xlabel="input side (px)", ylabel="latency p50 at batch 1 (ms)",
           title="Latency vs resolution (fitted exponent vs pixels)")
    _plain_log_axes(ax)
    ax.legend(fontsize=7)
    plots.save("latency_vs_resolution", fig)
    return "latency_vs_resolution", exps


def plot_memory_vs_batch(records: list[dict[str, Any]], plots: _Plots) -> str | None:
    import matplotlib.pyplot as plt

    rows = [r for r in records if r["metric"].startswith("memory_") and r["status"] == "ok"]
    gpu = [r for r in rows if "mem_allocated_peak_bytes" in r["values"]]
    cpu = [r for r in rows if "rss_peak_delta_bytes" in r["values"]]
    if not gpu and not cpu:
        return None
    fig, ax = plt.subplots(figsize=(7, 4.5))
    mib = 2**20
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in gpu or cpu:
        groups[f"{r['alias']} {r['metric'].removeprefix('memory_')} {r['img_size']}px"].append(r)
    for name, rs in sorted(groups.items()):
        rs.sort(key=lambda r: r["batch_size"])
        xs = [r["batch_size"] for r in rs]
        if gpu:
            line = ax.plot(xs, [r["values"]["mem_allocated_peak_bytes"] / mib for r in rs], marker="o",
                           label=f"{name} allocated")
            ax.plot(xs, [r["values"]["mem_reserved_peak_bytes"] / mib for r in rs], marker="s", linestyle="--",
                    color=line[0].get_color(), label=f"{name} reserved")
        else:
            ax.plot(xs, [r["values"]["rss_peak_delta_bytes"] / mib for r in rs], marker="o", label=f"{name} RSS peak")
    ax.set(xscale="log", xlabel="batch size", ylabel="peak memory (MiB)",
           title="Memory vs batch size" + (" (CUDA allocated vs reserved)" if gpu else " (CPU peak RSS of the case)"))
    _plain_log_axes(ax)
    ax.legend(fontsize=7)
    plots.save("memory_vs_batch", fig)
    return "memory_vs_batch"


# --- predicted memory ------------------------------------------------------------------------------------------

PREDICTION_BAND = 0.03  # the accuracy target of the memory prediction: within 3% of the measurement


def _case_name(r: dict[str, Any]) -> str:
    mode = "train" if r.get("phase") == "train" else "inference"
    return f"{r['alias']} {mode} b{r['batch_size']} {r['img_size']}px"


def plot_memory_predicted_vs_measured(records: list[dict[str, Any]], plots: _Plots) -> str | None:
    """One point per ``memory_predicted`` case: measured (x) against predicted (y), the y = x line, the ±3% band."""
    import matplotlib.pyplot as plt

    rows = [r for r in _ok(records, "memory_predicted") if r["values"].get("measured_peak_bytes")]
    if not rows:
        return None
    mib = 2**20
    fig, ax = plt.subplots(figsize=(6.5, 5))
    xs = [r["values"]["measured_peak_bytes"] / mib for r in rows]
    lo, hi = min(xs) * 0.8, max(xs) * 1.25
    line = [lo, hi]
    ax.fill_between(line, [v * (1 - PREDICTION_BAND) for v in line], [v * (1 + PREDICTION_BAND) for v in line],
                    color="tab:green", alpha=0.15, label=f"±{PREDICTION_BAND:.0%}")
    ax.plot(line, line, color="tab:green", linewidth=1, label="predicted = measured")
    for mode, marker in (("inference", "o"), ("train", "s")):
        pts = [r for r in rows if (r.get("phase") == "train") == (mode == "train")]
        if pts:
            ax.scatter([r["values"]["measured_peak_bytes"] / mib for r in pts],
                       [r["values"]["predicted_peak_bytes"] / mib for r in pts], marker=marker,
                       label=f"{mode} (MemTracker, real run)", zorder=3)
    cuda = [r for r in rows if r["values"].get("cuda_max_memory_allocated_bytes")]
    if cuda:
        ax.scatter([r["values"]["cuda_max_memory_allocated_bytes"] / mib for r in cuda],
                   [r["values"]["predicted_peak_bytes"] / mib for r in cuda], marker="x", color="tab:red",
                   label="vs torch.cuda.max_memory_allocated", zorder=3)
    for r in rows:
        at = (r["values"]["measured_peak_bytes"] / mib, r["values"]["predicted_peak_bytes"] / mib)
        ax.annotate(_case_name(r), at, fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured peak (MiB)",
           ylabel="predicted peak (MiB)", title="Peak memory of a step: predicted on fake tensors vs measured")
    _plain_log_axes(ax)
    ax.legend(fontsize=7, loc="upper left")
    plots.save("memory_predicted_vs_measured", fig)
    return "memory_predicted_vs_measured"


def plot_memory_breakdown(records: list[dict[str, Any]], plots: _Plots) -> str | None:
    """Stacked bars: what the predicted peak of each case is made of."""
    import matplotlib.pyplot as plt

    rows = sorted(_ok(records, "memory_predicted"), key=lambda r: (r["alias"], r.get("phase") or "",
                                                                   r["batch_size"] or 0, r["img_size"] or 0))
    if not rows:
        return None
    mib = 2**20
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.32 * len(rows)))
    names = [_case_name(r) for r in rows]
    left = [0.0] * len(rows)
    for cat in CATEGORIES:
        widths = [float(r["values"].get(f"predicted_{cat}_bytes") or 0) / mib for r in rows]
        ax.barh(names, widths, left=left, label=cat.replace("_", " "))
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set(xlabel="MiB at the predicted peak", title="What the peak is made of (predicted)")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    plots.save("memory_breakdown", fig)
    return "memory_breakdown"


def memory_prediction_html(records: list[dict[str, Any]]) -> str:
    """The table of predicted vs measured peaks and the activation-memory exponents, as HTML."""
    mib = 2**20
    parts = []
    rows = []
    for r in sorted(_ok(records, "memory_predicted"), key=_case_name):
        v = r["values"]
        err = v.get("prediction_rel_error")
        rows.append({
            "case": _case_name(r), "predicted_MiB": v["predicted_peak_bytes"] / mib,
            "measured_MiB": v["measured_peak_bytes"] / mib if v.get("measured_peak_bytes") else None,
            "error": f"{err:+.2%}" if err is not None else "not measured",
            "within_3%": None if err is None else ("yes" if abs(err) <= PREDICTION_BAND else "NO"),
            "peak_during": r["provenance"].get("peak_phase"),
        })
    if rows:
        parts.append("<p>Predicted: the step on fake tensors (no memory allocated). Measured: the same step on real "
                     "tensors in a fresh process, accounted by PyTorch's MemTracker. The train step is the one after "
                     "the first (optimizer state exists).</p>")
        parts.append(_table(rows, ("case", "predicted_MiB", "measured_MiB", "error", "within_3%", "peak_during")))
    exps = sorted((r["alias"], r["values"]["activation_exponent_vs_pixels"], r["values"].get("scaling_img_sizes"))
                  for r in _ok(records, "memory_scaling")
                  if r["values"].get("activation_exponent_vs_pixels") is not None)
    if exps:
        parts.append("<p>Activation bytes kept for backward against pixels (least squares in log-log):</p><ul>")
        parts.extend(f"<li>{html.escape(a)}: activations ∝ pixels<sup>{k:.2f}</sup> over "
                     f"{html.escape(str(sizes))} px</li>" for a, k, sizes in exps)
        parts.append("</ul>")
    return "".join(parts)


# The accuracy panels: (plot name, title, axis label, where the cost comes from). Latency is batch 1 (a latency
# record's, else the one the train_result measured on its trained model); training time is train_s.
ACCURACY_PANELS = (
    ("accuracy_vs_gmacs", "Accuracy vs GMACs", "GMACs per image"),
    ("accuracy_vs_params", "Accuracy vs params", "parameters (M)"),
    ("accuracy_vs_latency", "Accuracy vs latency", "latency p50 at batch 1 (ms)"),
    ("accuracy_vs_train_time", "Accuracy vs training time", "training time (s)"),
)


def _accuracy_label(r: dict[str, Any]) -> str:
    teacher = r.get("options", {}).get("teacher")
    data = r.get("options", {}).get("dataset")
    return f"{r['alias']}@{r['img_size']}" + (f" (teacher {teacher})" if teacher else "") + \
        (f" [{data}]" if data and data != "fashion_mnist" else "")


def accuracy_points(records: list[dict[str, Any]]) -> dict[str, list[tuple[float, float, str]]]:
    """(cost, top-1, label) per accuracy panel, from train_result records and the costs of the same model; points
    whose cost was timed on a busy machine are left out (``_accuracy_points`` keeps them apart)."""
    return _accuracy_points(records)[0]


def _accuracy_points(records: list[dict[str, Any]]) -> tuple[dict[str, list[tuple[float, float, str]]],
                                                               dict[str, list[tuple[float, float, str]]]]:
    """(clean, contended) points per panel: a time measured on a busy machine (the batch-1 latency, the training
    time) is drawn apart and never joins a Pareto front; counted costs (GMACs, params) are never contended."""
    static = _static_by_model(records)
    latency = {(r["alias"], r["img_size"]): r for r in _ok(records, "latency") if r["batch_size"] == 1}
    out: dict[str, list[tuple[float, float, str]]] = {name: [] for name, _, _ in ACCURACY_PANELS}
    busy: dict[str, list[tuple[float, float, str]]] = {name: [] for name, _, _ in ACCURACY_PANELS}
    for r in _ok(records, "train_result"):
        v = r["values"]
        if v.get("top1") is None:
            continue
        k = (r["alias"], r["img_size"])
        params = v.get("params") or static.get(k, {}).get("params")
        timed = latency.get(k, r)  # the latency record of the model, else the one the train_result measured
        costs = {
            "accuracy_vs_gmacs": (v.get("gmacs") or static.get(k, {}).get("gmacs"), False),
            "accuracy_vs_params": (params / 1e6 if params else None, False),
            "accuracy_vs_latency": (timed["values"].get("latency_ms_p50") if k in latency
                                    else v.get("latency_b1_ms_p50"), report_busy.is_contended(timed)),
            "accuracy_vs_train_time": (v.get("train_s"), report_busy.is_contended(r)),
        }
        for name, (cost, contended) in costs.items():
            if cost:
                (busy if contended else out)[name].append((float(cost), float(v["top1"]), _accuracy_label(r)))
    return out, busy


def dominated_by(points: Sequence[tuple[float, float, str]]) -> dict[str, str]:
    """Each point off the Pareto front -> a point that dominates it (no more cost, no less accuracy)."""
    front = pareto_front(points)
    on_front = {p[2] for p in front}
    out = {}
    for cost, acc, name in points:
        if name not in on_front:
            better = [f for f in front if f[0] <= cost and f[1] >= acc]
            out[name] = better[-1][2] if better else ""
    return out


def plot_accuracy(records: list[dict[str, Any]], plots: _Plots) -> list[str]:
    import matplotlib.pyplot as plt

    made = []
    points, contended = _accuracy_points(records)
    for name, title, label in ACCURACY_PANELS:
        pts, busy_pts = points[name], contended[name]
        if not pts and not busy_pts:
            continue
        front = pareto_front(pts)
        on_front = {p[2] for p in front}
        fig, ax = plt.subplots(figsize=(6.4, 4.6))
        dom = [p for p in pts if p[2] not in on_front]
        ax.scatter([p[0] for p in dom], [p[1] for p in dom], color="tab:gray", label="dominated")
        ax.scatter([p[0] for p in front], [p[1] for p in front], color="tab:red", zorder=3)
        for x, y, n in pts + busy_pts:
            ax.annotate(n.split("@")[0] + (" +T" if "teacher" in n else ""), (x, y), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        _draw_contended(ax, [(x, y) for x, y, _ in busy_pts])
        ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", label="Pareto front")
        xs = [p[0] for p in pts + busy_pts]
        if len(set(xs)) > 1 and min(xs) > 0 and max(xs) / min(xs) > 8:  # a ladder spans ~10x: log axis
            ax.set_xscale("log")
            _plain_log_axes(ax)
        ax.set(xlabel=label, ylabel="top-1 (%)", title=title)
        ax.legend(fontsize=7)
        plots.save(name, fig)
        made.append(name)
    return made


def accuracy_front_html(records: list[dict[str, Any]], name: str) -> str:
    """The panel's front and its dominated models, each with one model that dominates it."""
    pts = accuracy_points(records).get(name, [])
    if not pts:
        return ""
    front = [p[2] for p in pareto_front(pts)]
    dom = dominated_by(pts)
    items = "".join(f"<li>{html.escape(n)} (by {html.escape(b)})</li>" for n, b in sorted(dom.items()))
    return (f"<p class='front' data-panel='{name}'>Pareto front (cheapest first): {html.escape(', '.join(front))}."
            f"</p><p class='dominated' data-panel='{name}'>Dominated (another model is at least as accurate for no "
            f"more cost): {len(dom)}</p>" + (f"<ul class='dominated-list' data-panel='{name}'>{items}</ul>"
                                              if items else ""))


def _table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in columns)
    body = []
    for row in rows:
        cells = []
        for c in columns:
            v = row.get(c)
            text = f"{v:.4g}" if isinstance(v, float) else ("" if v is None else str(v))
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def contended(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Records measured while other processes took the machine (their timings are not the model's cost)."""
    return [r for r in records if any(r["values"].get(k) is True for k in keys.FLAG_KEYS)]


def _contended_section(records: list[dict[str, Any]]) -> str:
    busy = contended(records)
    if not busy:
        return ""
    cols = ("case_id", "cpu_share", "other_load_cores", "latency_ms_p50")
    rows = [{"case_id": r["case_id"], **{k: r["values"].get(k) for k in cols[1:]}} for r in busy]
    return (f"<h2 id='contended'>Measured on a busy machine ({len(busy)} of {len(records)} records)</h2>"
            "<p>Other processes took the CPU while these cases were timed: their times measure the contention, not "
            "the model. <code>cpu_share</code> = process CPU time ÷ (wall time × threads); <code>other_load_cores"
            "</code> = cores busy with other processes. Re-run them on an idle machine; <code>lvm compare</code> "
            "calls them inconclusive.</p>"
            + _table(rows, cols))


def build_report(paths: Sequence[Path | str], out: Path | str) -> dict[str, Path]:
    """Write ``report.html``, ``results.csv`` and the PNG plots into ``out``; return their paths."""
    records, envs = load_runs(paths)  # every input read and checked before anything is written
    return write_report(records, envs, paths, out)


def write_report(records: list[dict[str, Any]], envs: list[dict[str, Any]], paths: Sequence[Path | str],
                 out: Path | str) -> dict[str, Path]:
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise ValueError(f"{out_dir} is a file: the report's output (-o) is a folder to write report.html, "
                         "results.csv and the plots into")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ValueError(f"cannot create the report folder {out_dir}: {exc.strerror}") from exc
    rows = csv_rows(records)
    csv_path = out_dir / "results.csv"
    with open(csv_path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    plots = _Plots(out_dir)
    sections: list[tuple[str, str | None, str]] = []
    sections.append(("Latency vs batch size", plot_latency_vs_batch(records, plots),
                     "needs latency records at two or more batch sizes"))
    name, exps = plot_latency_vs_resolution(records, plots)
    exp_text = "".join(
        f"<li>{html.escape(k)}: latency ∝ pixels<sup>{v:.2f}</sup></li>" for k, v in sorted(exps.items())
    )
    sections.append(("Latency vs resolution", name, "needs batch-1 latency records at two or more image sizes"))
    sections.append(("Memory vs batch size", plot_memory_vs_batch(records, plots),
                     "needs memory records (benches/bench_memory.py)"))
    sections.append(("Memory: predicted vs measured", plot_memory_predicted_vs_measured(records, plots),
                     "needs memory_predicted records with a measurement (benches/bench_memory.py -k predicted)"))
    sections.append(("Memory: predicted breakdown", plot_memory_breakdown(records, plots),
                     "needs memory_predicted records (benches/bench_memory.py -k predicted)"))
    acc = plot_accuracy(records, plots)
    for key, title, _ in ACCURACY_PANELS:
        sections.append((title, key if key in acc else None,
                         "needs train_result records (train.py, lvm accuracy) and FLOPs or batch-1 latency records "
                         "of the same model"))

    summary_cols = ("metric", "alias", "device", "dtype", "batch_size", "img_size", "status", "contended",
                    "param_count", "gmacs", "latency_ms_p50", "infer_samples_per_sec", "mfu",
                    "instance_latency_ms_p90", "rss_peak_delta_bytes", "mem_allocated_peak_bytes", "epoch_s", "top1",
                    "error")
    parts = [
        "<!doctype html><html lang='en'><head><meta charset='utf-8'><title>lvmharness report</title><style>",
        "body{font:14px system-ui,sans-serif;margin:24px;color:#1d2330}table{border-collapse:collapse;font-size:12px}",
        "td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}th{background:#f2f4f7}",
        "td:nth-child(-n+3){text-align:left}.empty{color:#8a8f98;font-style:italic}img{max-width:100%}",
        "</style></head><body><h1>lvmharness report</h1>",
        f"<p>{len(records)} records from {len(paths)} run(s): {html.escape(', '.join(str(p) for p in paths))}. "
        "MACs = multiply-accumulates; FLOPs = 2 × MACs. CSV: <a href='results.csv'>results.csv</a>.</p>",
    ]
    for env in envs:
        parts.append(f"<p class='machine'>Machine: {html.escape(machine_line(env))}.</p>")
    interactive, _ = interactive_html(records)
    parts.append(interactive)
    parts.append("<h2>Static plots (PNG)</h2>")
    for title, plot_key, why in sections:
        parts.append(f"<h3>{html.escape(title)}</h3>")
        if plot_key is None:
            parts.append(f"<p class='empty'>No data for this plot in these runs: {html.escape(why)}.</p>")
            continue
        data = base64.b64encode(plots.files[plot_key].read_bytes()).decode("ascii")
        parts.append(f"<img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
        if plot_key == "latency_vs_resolution" and exp_text:
            parts.append(f"<ul>{exp_text}</ul>")
        if plot_key == "memory_predicted_vs_measured":
            parts.append(memory_prediction_html(records))
        if plot_key.startswith("accuracy_vs_"):
            parts.append(accuracy_front_html(records, plot_key))
    parts.append(_contended_section(records))
    parts.append("<h2>All cases</h2>")
    parts.append(_table(rows, summary_cols) if rows else "<p class='empty'>No records.</p>")
    parts.append("</body></html>")
    html_path = out_dir / "report.html"
    html_path.write_text("".join(parts), encoding="utf-8")
    return {"html": html_path, "csv": csv_path, **plots.files}


# --- lvm report ----------------------------------------------------------------------------------------------------


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run folders (results/<run-id>) or results.json files")
    p.add_argument("-o", "--output", type=output_folder, default=None,
                   help="folder to write (default: <first run>/report)")


def run(args: argparse.Namespace) -> int:
    runs = [Path(r) for r in args.runs]
    out = args.output if args.output else (runs[0] if runs[0].is_dir() else runs[0].parent) / "report"
    from lvmharness.core.outputs import check_output_folder

    out = check_output_folder(out, what="report folder")  # the default too, before anything is read or written
    records, envs = load_runs(runs)
    from lvmharness.store.results import torn_lines

    for note in (n for r in runs for n in torn_lines(r)):
        print(f"lvm report: {note}", file=sys.stderr)
    files = write_report(records, envs, runs, out)
    print(f"report: {files['html']}\ncsv:    {files['csv']}")
    busy = contended(records)
    if busy:
        print(f"contended: {len(busy)} record(s) measured on a busy machine (their times are not the model's): "
              + ", ".join(r["case_id"] for r in busy[:5]) + (", ..." if len(busy) > 5 else ""))
    for name, path in files.items():
        if name not in ("html", "csv"):
            print(f"plot:   {path}")
    return 0
