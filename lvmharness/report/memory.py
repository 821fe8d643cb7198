"""The report's predicted-memory part: predicted against measured peaks (PNG), what each predicted peak is made of
(stacked bars), and the table and activation exponents as HTML. Torch-free; matplotlib is imported when drawn."""

from __future__ import annotations

import html
from typing import Any

from lvmharness.core.memory_categories import CATEGORIES
from lvmharness.core.units import to_mib
from lvmharness.report.plots import Plots, plain_log_axes
from lvmharness.report.records import Record, ok
from lvmharness.report.tables import html_table

PREDICTION_BAND = 0.03  # the accuracy target of the memory prediction: within 3% of the measurement


def case_name(r: Record) -> str:
    mode = "train" if r.get("phase") == "train" else "inference"
    return f"{r['alias']} {mode} b{r['batch_size']} {r['img_size']}px"


def plot_memory_predicted_vs_measured(records: list[Record], plots: Plots) -> str | None:
    """One point per ``memory_predicted`` case: measured (x) against predicted (y), the y = x line, the ±3% band."""
    import matplotlib.pyplot as plt

    rows = [r for r in ok(records, "memory_predicted") if r["values"].get("measured_peak_bytes")]
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(6.5, 5))
    xs = [to_mib(r["values"]["measured_peak_bytes"]) for r in rows]
    lo, hi = min(xs) * 0.8, max(xs) * 1.25
    line = [lo, hi]
    ax.fill_between(line, [v * (1 - PREDICTION_BAND) for v in line], [v * (1 + PREDICTION_BAND) for v in line],
                    color="tab:green", alpha=0.15, label=f"±{PREDICTION_BAND:.0%}")
    ax.plot(line, line, color="tab:green", linewidth=1, label="predicted = measured")
    for mode, marker in (("inference", "o"), ("train", "s")):
        pts = [r for r in rows if (r.get("phase") == "train") == (mode == "train")]
        if pts:
            ax.scatter([to_mib(r["values"]["measured_peak_bytes"]) for r in pts],
                       [to_mib(r["values"]["predicted_peak_bytes"]) for r in pts], marker=marker,
                       label=f"{mode} (MemTracker, real run)", zorder=3)
    cuda = [r for r in rows if r["values"].get("cuda_max_memory_allocated_bytes")]
    if cuda:
        ax.scatter([to_mib(r["values"]["cuda_max_memory_allocated_bytes"]) for r in cuda],
                   [to_mib(r["values"]["predicted_peak_bytes"]) for r in cuda], marker="x", color="tab:red",
                   label="vs torch.cuda.max_memory_allocated", zorder=3)
    for r in rows:
        at = (to_mib(r["values"]["measured_peak_bytes"]), to_mib(r["values"]["predicted_peak_bytes"]))
        ax.annotate(case_name(r), at, fontsize=6, xytext=(3, -8), textcoords="offset points")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured peak (MiB)",
           ylabel="predicted peak (MiB)", title="Peak memory of a step: predicted on fake tensors vs measured")
    plain_log_axes(ax)
    ax.legend(fontsize=7, loc="upper left")
    plots.save("memory_predicted_vs_measured", fig)
    return "memory_predicted_vs_measured"


def plot_memory_breakdown(records: list[Record], plots: Plots) -> str | None:
    """Stacked bars: what the predicted peak of each case is made of."""
    import matplotlib.pyplot as plt

    rows = sorted(ok(records, "memory_predicted"), key=lambda r: (r["alias"], r.get("phase") or "",
                                                                  r["batch_size"] or 0, r["img_size"] or 0))
    if not rows:
        return None
    fig, ax = plt.subplots(figsize=(7.5, 0.9 + 0.32 * len(rows)))
    names = [case_name(r) for r in rows]
    left = [0.0] * len(rows)
    for cat in CATEGORIES:
        widths = [to_mib(float(r["values"].get(f"predicted_{cat}_bytes") or 0)) for r in rows]
        ax.barh(names, widths, left=left, label=cat.replace("_", " "))
        left = [a + b for a, b in zip(left, widths, strict=True)]
    ax.invert_yaxis()
    ax.set(xlabel="MiB at the predicted peak", title="What the peak is made of (predicted)")
    ax.tick_params(axis="y", labelsize=7)
    ax.legend(fontsize=7, ncol=3, loc="lower right")
    plots.save("memory_breakdown", fig)
    return "memory_breakdown"


def _prediction_row(r: Record) -> dict[str, Any]:
    v = r["values"]
    err = v.get("prediction_rel_error")
    return {
        "case": case_name(r), "predicted_MiB": to_mib(v["predicted_peak_bytes"]),
        "measured_MiB": to_mib(v["measured_peak_bytes"]) if v.get("measured_peak_bytes") else None,
        "error": f"{err:+.2%}" if err is not None else "not measured",
        "within_3%": None if err is None else ("yes" if abs(err) <= PREDICTION_BAND else "NO"),
        "peak_during": r["provenance"].get("peak_phase"),
    }


def memory_prediction_html(records: list[Record]) -> str:
    """The table of predicted vs measured peaks and the activation-memory exponents, as HTML."""
    parts = []
    rows = [_prediction_row(r) for r in sorted(ok(records, "memory_predicted"), key=case_name)]
    if rows:
        parts.append("<p>Predicted: the step on fake tensors (no memory allocated). Measured: the same step on real "
                     "tensors in a fresh process, accounted by PyTorch's MemTracker. The train step is the one after "
                     "the first (optimizer state exists).</p>")
        parts.append(html_table(rows, ("case", "predicted_MiB", "measured_MiB", "error", "within_3%", "peak_during")))
    exps = sorted((r["alias"], r["values"]["activation_exponent_vs_pixels"], r["values"].get("scaling_img_sizes"))
                  for r in ok(records, "memory_scaling")
                  if r["values"].get("activation_exponent_vs_pixels") is not None)
    if exps:
        parts.append("<p>Activation bytes kept for backward against pixels (least squares in log-log):</p><ul>")
        parts.extend(f"<li>{html.escape(a)}: activations ∝ pixels<sup>{k:.2f}</sup> over "
                     f"{html.escape(str(sizes))} px</li>" for a, k, sizes in exps)
        parts.append("</ul>")
    return "".join(parts)
