"""The report's accuracy panels: top-1 of ``train_result`` records against four costs (GMACs, params, batch-1
latency, training time), with the Pareto front and, for each dominated model, one model that dominates it.

A time measured on a busy machine (the batch-1 latency, the training time) is drawn apart and never joins a front;
counted costs (GMACs, params) are never contended. Torch-free; matplotlib is imported when drawn.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import Any

from lvmharness.report.plots import Plots, draw_contended, plain_log_axes
from lvmharness.report.records import Record, ok, static_by_model
from lvmharness.store.records import is_contended

Point = tuple[float, float, str]  # (cost, top-1 %, label)

# The accuracy panels: (plot name, title, axis label). Latency is batch 1 (a latency record's, else the one the
# train_result measured on its trained model); training time is train_s.
ACCURACY_PANELS = (
    ("accuracy_vs_gmacs", "Accuracy vs GMACs", "GMACs per image"),
    ("accuracy_vs_params", "Accuracy vs params", "parameters (M)"),
    ("accuracy_vs_latency", "Accuracy vs latency", "latency p50 at batch 1 (ms)"),
    ("accuracy_vs_train_time", "Accuracy vs training time", "training time (s)"),
)


def pareto_front(points: Sequence[Point]) -> list[Point]:
    """Points not dominated by another with lower-or-equal cost and higher-or-equal accuracy."""
    front = []
    best = -math.inf
    for cost, acc, name in sorted(points, key=lambda p: (p[0], -p[1])):
        if acc > best:
            front.append((cost, acc, name))
            best = acc
    return front


def dominated_by(points: Sequence[Point]) -> dict[str, str]:
    """Each point off the Pareto front -> a point that dominates it (no more cost, no less accuracy)."""
    front = pareto_front(points)
    on_front = {p[2] for p in front}
    out = {}
    for cost, acc, name in points:
        if name not in on_front:
            better = [f for f in front if f[0] <= cost and f[1] >= acc]
            out[name] = better[-1][2] if better else ""
    return out


def _accuracy_label(r: Record) -> str:
    teacher = r.get("options", {}).get("teacher")
    data = r.get("options", {}).get("dataset")
    return f"{r['alias']}@{r['img_size']}" + (f" (teacher {teacher})" if teacher else "") + \
        (f" [{data}]" if data and data != "fashion_mnist" else "")


def accuracy_points(records: list[Record]) -> dict[str, list[Point]]:
    """(cost, top-1, label) per accuracy panel, from train_result records and the costs of the same model; points
    whose cost was timed on a busy machine are left out (``split_accuracy_points`` keeps them apart)."""
    return split_accuracy_points(records)[0]


def split_accuracy_points(records: list[Record]) -> tuple[dict[str, list[Point]], dict[str, list[Point]]]:
    """(clean, contended) points per panel."""
    static = static_by_model(records)
    latency = {(r["alias"], r["img_size"]): r for r in ok(records, "latency") if r["batch_size"] == 1}
    out: dict[str, list[Point]] = {name: [] for name, _, _ in ACCURACY_PANELS}
    busy: dict[str, list[Point]] = {name: [] for name, _, _ in ACCURACY_PANELS}
    for r in ok(records, "train_result"):
        v = r["values"]
        if v.get("top1") is None:
            continue
        k = (r["alias"], r["img_size"])
        params = v.get("params") or static.get(k, {}).get("params")
        timed = latency.get(k, r)  # the latency record of the model, else the one the train_result measured
        costs = {  # panel -> (cost, whether it was timed on a busy machine)
            "accuracy_vs_gmacs": (v.get("gmacs") or static.get(k, {}).get("gmacs"), False),
            "accuracy_vs_params": (params / 1e6 if params else None, False),
            "accuracy_vs_latency": (timed["values"].get("latency_ms_p50") if k in latency
                                    else v.get("latency_b1_ms_p50"), is_contended(timed)),
            "accuracy_vs_train_time": (v.get("train_s"), is_contended(r)),
        }
        for name, (cost, contended) in costs.items():
            if cost:
                (busy if contended else out)[name].append((float(cost), float(v["top1"]), _accuracy_label(r)))
    return out, busy


def _draw_panel(pts: list[Point], busy_pts: list[Point], title: str, label: str) -> Any:
    """One panel: dominated models grey, the front red and joined by a step line, contended points apart."""
    import matplotlib.pyplot as plt

    front = pareto_front(pts)
    on_front = {p[2] for p in front}
    fig, ax = plt.subplots(figsize=(6.4, 4.6))
    dom = [p for p in pts if p[2] not in on_front]
    ax.scatter([p[0] for p in dom], [p[1] for p in dom], color="tab:gray", label="dominated")
    ax.scatter([p[0] for p in front], [p[1] for p in front], color="tab:red", zorder=3)
    for x, y, n in pts + busy_pts:
        ax.annotate(n.split("@")[0] + (" +T" if "teacher" in n else ""), (x, y), fontsize=7, xytext=(3, 3),
                    textcoords="offset points")
    draw_contended(ax, [(x, y) for x, y, _ in busy_pts])
    ax.step([p[0] for p in front], [p[1] for p in front], where="post", color="tab:red", label="Pareto front")
    xs = [p[0] for p in pts + busy_pts]
    if len(set(xs)) > 1 and min(xs) > 0 and max(xs) / min(xs) > 8:  # a ladder spans ~10x: log axis
        ax.set_xscale("log")
        plain_log_axes(ax)
    ax.set(xlabel=label, ylabel="top-1 (%)", title=title)
    ax.legend(fontsize=7)
    return fig


def plot_accuracy(records: list[Record], plots: Plots) -> list[str]:
    """The names of the panels drawn (those with at least one point)."""
    made = []
    points, contended = split_accuracy_points(records)
    for name, title, label in ACCURACY_PANELS:
        if points[name] or contended[name]:
            plots.save(name, _draw_panel(points[name], contended[name], title, label))
            made.append(name)
    return made


def accuracy_front_html(records: list[Record], name: str) -> str:
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
