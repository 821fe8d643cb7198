"""The interactive part of ``lvm report``: plotly figures with plotly.js embedded once, so the file works offline.

One function per chart, each taking the records and returning a figure or ``None`` when the runs hold no data for
it; :func:`interactive_html` lays out the ones that exist. Adding a chart is one function and one line in
:data:`CHARTS`. Torch-free: ``lvm report`` never imports PyTorch.
"""

from __future__ import annotations

import html
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import Any

from lvmharness.core.stats import loglog_slope
from lvmharness.core.units import GIB, to_mib
from lvmharness.formats.graph_format import LAYER_TYPES
from lvmharness.report import busy as report_busy
from lvmharness.report.records import ok
from lvmharness.store.records import is_contended

TYPE_COLORS = {"attention": "#d62728", "mlp": "#1f77b4", "conv": "#2ca02c", "norm": "#9467bd",
               "embedding": "#ff7f0e", "head": "#8c564b", "other": "#7f7f7f"}
Figure = Any  # plotly.graph_objects.Figure (imported lazily: plotly is only needed when a report is written)


def _series_name(r: dict[str, Any], *fields: str) -> str:
    return " ".join(str(r[f]) if f != "img_size" else f"{r[f]}px" for f in fields)


def latency_and_throughput_vs_batch(records: Sequence[dict[str, Any]]) -> Figure | None:
    """Latency p50 vs batch beside throughput vs batch: latency is not 1/throughput, so both are shown."""
    from plotly.subplots import make_subplots

    series: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    busy: dict[str, list[tuple[int, float, float]]] = defaultdict(list)
    for r in ok(records, "latency"):
        v = r["values"]
        if v.get("latency_ms_p50") is not None and v.get("throughput_img_s") is not None:
            (busy if is_contended(r) else series)[_series_name(r, "alias", "device", "dtype",
                                                                           "img_size")].append(
                (r["batch_size"], v["latency_ms_p50"], v["throughput_img_s"]))
    shown = sorted(k for k in set(series) | set(busy) if len({p[0] for p in series[k] + busy[k]}) >= 2)
    if not shown:
        return None
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Latency p50 vs batch size", "Throughput vs batch size"))
    for i, (name, pts) in enumerate((k, sorted(series[k])) for k in shown if series[k]):
        color = _palette(i)
        xs = [p[0] for p in pts]
        fig.add_scatter(x=xs, y=[p[1] for p in pts], mode="lines+markers", name=name, legendgroup=name,
                        line={"color": color}, row=1, col=1,
                        hovertemplate="batch %{x}<br>%{y:.3f} ms<extra>" + html.escape(name) + "</extra>")
        fig.add_scatter(x=xs, y=[p[2] for p in pts], mode="lines+markers", name=name, legendgroup=name,
                        showlegend=False, line={"color": color}, row=1, col=2,
                        hovertemplate="batch %{x}<br>%{y:.1f} img/s<extra>" + html.escape(name) + "</extra>")
    contended = [(k, p) for k in shown for p in sorted(busy[k])]
    if contended:
        for col, at in ((1, 1), (2, 2)):
            fig.add_scatter(x=[p[0] for _, p in contended], y=[p[at] for _, p in contended], mode="markers",
                            name=report_busy.note(len(contended)), legendgroup="contended", showlegend=col == 1,
                            marker={"symbol": "circle-open", "color": report_busy.COLOR, "size": 9},
                            text=[k for k, _ in contended], row=1, col=col,
                            hovertemplate="contended: %{text}<br>batch %{x}, %{y:.3g}<extra></extra>")
        fig.update_layout(title=report_busy.note(len(contended)))
    fig.update_xaxes(type="log", title_text="batch size")
    fig.update_yaxes(type="log", title_text="forward latency p50 (ms)", row=1, col=1)
    fig.update_yaxes(type="log", title_text="images / s", row=1, col=2)
    return _layout(fig, height=430)


def latency_vs_resolution(records: Sequence[dict[str, Any]]) -> Figure | None:
    """Batch-1 latency p50 against the input side, log-log: the slope against pixels is the scaling exponent."""
    import plotly.graph_objects as go

    series: dict[str, list[tuple[int, float]]] = defaultdict(list)
    busy: dict[str, list[tuple[int, float]]] = defaultdict(list)
    for r in ok(records, "latency"):
        if r["batch_size"] == 1 and r["values"].get("latency_ms_p50") is not None:
            (busy if is_contended(r) else series)[_series_name(r, "alias", "device", "dtype")].append(
                (r["img_size"], r["values"]["latency_ms_p50"]))
    shown = sorted(k for k in set(series) | set(busy) if len({s for s, _ in series[k] + busy[k]}) >= 2)
    if not shown:
        return None
    fig = go.Figure()
    for i, (name, pts) in enumerate((k, sorted(series[k])) for k in shown if series[k]):
        # Fitted to clean points only, and only where two sizes are clean.
        k = loglog_slope((s * s, ms) for s, ms in pts) if len({s for s, _ in pts}) >= 2 else None
        label = f"{name}: ∝ pixels^{k:.2f}" if k is not None else name
        fig.add_scatter(x=[p[0] for p in pts], y=[p[1] for p in pts], mode="lines+markers", name=label,
                        line={"color": _palette(i)}, hovertemplate="%{x}px<br>%{y:.3f} ms<extra></extra>")
    contended = [(k, p) for k in shown for p in sorted(busy[k])]
    title = "Latency vs resolution (fitted exponent vs pixels)"
    if contended:
        fig.add_scatter(x=[p[0] for _, p in contended], y=[p[1] for _, p in contended], mode="markers",
                        name=report_busy.note(len(contended)), text=[k for k, _ in contended],
                        marker={"symbol": "circle-open", "color": report_busy.COLOR, "size": 9},
                        hovertemplate="contended: %{text}<br>%{x}px, %{y:.3f} ms<extra></extra>")
        title += f"<br><sup>{report_busy.note(len(contended))}</sup>"
    fig.update_xaxes(type="log", title_text="input side (px)")
    fig.update_yaxes(type="log", title_text="latency p50 at batch 1 (ms)")
    fig.update_layout(title=title, showlegend=True)
    return _layout(fig)


def time_by_layer_type(records: Sequence[dict[str, Any]]) -> Figure | None:
    """Measured forward time split by layer type (attention, MLP, conv, norm, embedding, head), one panel per
    model, one stacked bar per resolution: where ViT, Swin and ResNet spend their time as inputs grow."""
    from plotly.subplots import make_subplots

    rows = [r for r in ok(records, "layer_times") if any(f"layer_type_{t}_ms" in r["values"] for t in LAYER_TYPES)]
    if not rows:
        return None
    panels: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        panels[f"{r['alias']} · {r['device']} {r['dtype']} · batch {r['batch_size']}"].append(r)
    names = sorted(panels)
    fig = make_subplots(rows=1, cols=len(names), subplot_titles=names, shared_yaxes=False,
                        horizontal_spacing=min(0.08, 0.5 / max(len(names), 1)))
    in_legend: set[str] = set()  # each layer type listed once, whatever panel it first appears in
    for col, name in enumerate(names, start=1):
        rs = sorted(panels[name], key=lambda r: r["img_size"])
        xs = [f"{r['img_size']}px" for r in rs]
        totals = [sum(r["values"].get(f"layer_type_{t}_ms") or 0.0 for t in LAYER_TYPES) for r in rs]
        for t in LAYER_TYPES:
            ys = [r["values"].get(f"layer_type_{t}_ms") or 0.0 for r in rs]
            if not any(ys):
                continue
            shares = [y / tot if tot else 0.0 for y, tot in zip(ys, totals, strict=True)]
            fig.add_bar(x=xs, y=ys, name=t, legendgroup=t, showlegend=t not in in_legend,
                        marker={"color": TYPE_COLORS[t]}, customdata=shares, row=1, col=col,
                        hovertemplate=f"{t}<br>%{{x}}: %{{y:.2f}} ms (%{{customdata:.1%}})<extra></extra>")
            in_legend.add(t)
    fig.update_layout(barmode="stack", title="Time by layer type (measured op time per module, lvm layers)")
    fig.update_yaxes(title_text="forward time (ms)", col=1)
    return _layout(fig, height=460)


def memory_predicted_vs_measured(records: Sequence[dict[str, Any]]) -> Figure | None:
    """Each ``memory_predicted`` case: the measured peak (x) against the prediction (y), with y = x and the ±3%
    band the prediction aims at; hover shows the relative error."""
    import plotly.graph_objects as go

    rows = [r for r in ok(records, "memory_predicted")
            if r["values"].get("measured_peak_bytes") and r["values"].get("predicted_peak_bytes")]
    if not rows:
        return None
    fig = go.Figure()
    groups: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[_series_name(r, "alias", "device", "dtype", "phase")].append(r)
    for i, (name, rs) in enumerate(sorted(groups.items())):
        rs.sort(key=lambda r: (r["img_size"] or 0, r["batch_size"] or 0))
        fig.add_scatter(
            x=[to_mib(r["values"]["measured_peak_bytes"]) for r in rs],
            y=[to_mib(r["values"]["predicted_peak_bytes"]) for r in rs], mode="markers", name=name,
            marker={"color": _palette(i), "size": 9},
            text=[f"batch {r['batch_size']}, {r['img_size']}px, error "
                  f"{(r['values']['predicted_peak_bytes'] / r['values']['measured_peak_bytes'] - 1):+.1%}" for r in rs],
            hovertemplate="measured %{x:.1f} MiB<br>predicted %{y:.1f} MiB<br>%{text}<extra></extra>")
    top = to_mib(max(max(r["values"]["measured_peak_bytes"], r["values"]["predicted_peak_bytes"]) for r in rows)) * 1.1
    for factor, dash, label in ((1.0, "solid", "predicted = measured"), (1.03, "dot", "+3%"), (0.97, "dot", "−3%")):
        fig.add_scatter(x=[0, top], y=[0, top * factor], mode="lines", name=label,
                        line={"color": "#2ca02c" if factor == 1.0 else "#98df8a", "dash": dash}, hoverinfo="skip")
    fig.update_xaxes(title_text="measured peak of the step (MiB)", range=[0, top])
    fig.update_yaxes(title_text="predicted peak (MiB)", range=[0, top])
    fig.update_layout(title="Peak memory: predicted vs measured")
    return _layout(fig)


def _palette(i: int) -> str:
    import plotly.colors

    colors = plotly.colors.qualitative.Plotly
    return str(colors[i % len(colors)])


def _layout(fig: Figure, height: int = 420) -> Figure:
    fig.update_layout(height=height, margin={"l": 60, "r": 20, "t": 60, "b": 50}, template="plotly_white",
                      legend={"font": {"size": 10}})
    return fig


# Title, figure builder, what is needed when the runs have no data for it.
CHARTS: tuple[tuple[str, Callable[[Sequence[dict[str, Any]]], Figure | None], str], ...] = (
    ("Latency and throughput vs batch size", latency_and_throughput_vs_batch,
     "needs latency records at two or more batch sizes"),
    ("Latency vs resolution", latency_vs_resolution, "needs batch-1 latency records at two or more image sizes"),
    ("Time by layer type", time_by_layer_type,
     "needs layer_times records (pytest benches/ --lvm-layers, or lvm layers for one model)"),
    ("Memory: predicted vs measured", memory_predicted_vs_measured,
     "needs memory_predicted records (benches/bench_memory.py)"),
)


def machine_line(env: dict[str, Any]) -> str:
    """What the runs ran on, for people: CPU, cores, RAM, GPUs, versions and the measured peaks."""
    cores = env.get("cpu_cores_available")
    logical = env.get("cpu_logical")
    core_text = f"{cores} cores available" + (f" of {logical} logical" if logical and logical != cores else "")
    ram = env.get("ram_bytes")
    parts = [f"CPU {env.get('cpu_model') or 'unknown'} ({core_text}"
             + (f", {ram / GIB:.0f} GiB RAM)" if ram else ")")]
    gpus = env.get("cuda_devices") or []
    if gpus:
        names: dict[str, int] = defaultdict(int)
        for g in gpus:
            names[f"{g.get('name')} ({g.get('total_memory_bytes', 0) / GIB:.0f} GiB)"] += 1
        parts.append("GPU " + ", ".join(f"{n} × {c}" if c > 1 else n for n, c in names.items()))
    else:
        parts.append("no GPU")
    versions = f"torch {env.get('torch')}, timm {env.get('timm')}"
    if env.get("cuda"):
        versions += f", CUDA {env.get('cuda')}"
    parts.append(versions)
    if env.get("torch_num_threads"):
        parts.append(f"{env['torch_num_threads']} torch threads")
    peaks = env.get("peak_flops_per_s") or {}
    if isinstance(peaks, dict) and peaks:
        parts.append("peak compute " + ", ".join(
            f"{k} {v / 1e9:.1f} GFLOP/s" for k, v in sorted(peaks.items()) if isinstance(v, int | float)))
    bandwidth = env.get("peak_bytes_per_s") or {}
    if isinstance(bandwidth, dict) and bandwidth:
        parts.append("measured copy bandwidth " + ", ".join(
            f"{k} {v / 1e9:.1f} GB/s" for k, v in sorted(bandwidth.items()) if isinstance(v, int | float)))
    git = env.get("git_commit")
    if git:
        parts.append(f"git {str(git)[:12]}{' (dirty)' if env.get('git_dirty') else ''}")
    return "; ".join(parts)


def plotly_script() -> str:
    """plotly.js itself, inline: the report opens without any network."""
    from plotly.offline import get_plotlyjs

    return "<script>" + get_plotlyjs().replace("</script", "<\\/script") + "</script>"


def interactive_html(records: Sequence[dict[str, Any]]) -> tuple[str, list[str]]:
    """(HTML of every chart with data, titles of those drawn); plotly.js is included once, before the first."""
    import plotly.io as pio

    parts: list[str] = []
    drawn: list[str] = []
    for i, (title, build, why) in enumerate(CHARTS):
        parts.append(f"<h2>{html.escape(title)}</h2>")
        fig = build(records)
        if fig is None:
            parts.append(f"<p class='empty'>No data for this chart in these runs: {html.escape(why)}.</p>")
            continue
        if not drawn:
            parts.insert(0, plotly_script())
        drawn.append(title)
        parts.append(pio.to_html(fig, full_html=False, include_plotlyjs=False, div_id=f"chart-{i}",
                                 config={"displaylogo": False, "responsive": True}))
    return "".join(parts), drawn
