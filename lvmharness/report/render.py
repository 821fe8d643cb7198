"""The report page: ``report.html`` (self-contained), ``results.csv`` and the PNG plots from one or more runs.

The page opens with interactive plotly charts (plotly.js embedded: it works offline; see
:mod:`lvmharness.report.charts`) — latency and throughput vs batch, latency vs resolution, time by layer type —
and the machine written for people; the PNG plots follow (:mod:`~lvmharness.report.plots`,
:mod:`~lvmharness.report.memory`, :mod:`~lvmharness.report.accuracy`), then the contended records and a table of
all cases (:mod:`~lvmharness.report.tables`). A section without data says so instead of failing. Torch-free.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from lvmharness.core.outputs import OutputPathError
from lvmharness.report.accuracy import ACCURACY_PANELS, accuracy_front_html, plot_accuracy
from lvmharness.report.charts import interactive_html, machine_line
from lvmharness.report.memory import memory_prediction_html, plot_memory_breakdown, plot_memory_predicted_vs_measured
from lvmharness.report.plots import Plots, plot_latency_vs_batch, plot_latency_vs_resolution, plot_memory_vs_batch
from lvmharness.report.records import Record, load_runs
from lvmharness.report.tables import SUMMARY_COLUMNS, contended_section, csv_rows, html_table, write_csv

Section = tuple[str, str | None, str]  # (title, plot name or None when no data, what the plot needs)

STYLE = ("body{font:14px system-ui,sans-serif;margin:24px;color:#1d2330}table{border-collapse:collapse;font-size:12px}"
         "td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}th{background:#f2f4f7}"
         "td:nth-child(-n+3){text-align:left}.empty{color:#8a8f98;font-style:italic}img{max-width:100%}")


def build_report(paths: Sequence[Path | str], out: Path | str) -> dict[str, Path]:
    """Write ``report.html``, ``results.csv`` and the PNG plots into ``out``; return their paths."""
    records, envs = load_runs(paths)  # every input read and checked before anything is written
    return write_report(records, envs, paths, out)


def _output_dir(out: Path | str) -> Path:
    out_dir = Path(out)
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputPathError(f"{out_dir} is a file: the report's output (-o) is a folder to write report.html, "
                              "results.csv and the plots into")
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(f"cannot create the report folder {out_dir}: {exc.strerror}") from exc
    return out_dir


def _png_sections(records: list[Record], plots: Plots) -> tuple[list[Section], dict[str, float]]:
    """Draw every PNG plot; (the sections in page order, the latency-vs-pixels exponent per series)."""
    batch = plot_latency_vs_batch(records, plots)  # drawn in page order: the files are listed in that order
    resolution, exps = plot_latency_vs_resolution(records, plots)
    sections: list[Section] = [
        ("Latency vs batch size", batch, "needs latency records at two or more batch sizes"),
        ("Latency vs resolution", resolution, "needs batch-1 latency records at two or more image sizes"),
        ("Memory vs batch size", plot_memory_vs_batch(records, plots),
         "needs memory records (benches/bench_memory.py)"),
        ("Memory: predicted vs measured", plot_memory_predicted_vs_measured(records, plots),
         "needs memory_predicted records with a measurement (benches/bench_memory.py -k predicted)"),
        ("Memory: predicted breakdown", plot_memory_breakdown(records, plots),
         "needs memory_predicted records (benches/bench_memory.py -k predicted)"),
    ]
    acc = plot_accuracy(records, plots)
    sections += [(title, key if key in acc else None,
                  "needs train_result records (train.py, lvm accuracy) and FLOPs or batch-1 latency records "
                  "of the same model") for key, title, _ in ACCURACY_PANELS]
    return sections, exps


def _section_html(section: Section, records: list[Record], plots: Plots, exps: dict[str, float]) -> str:
    """One PNG section: the image inline (base64) and what goes under it, or why there is no data."""
    title, plot_key, why = section
    parts = [f"<h3>{html.escape(title)}</h3>"]
    if plot_key is None:
        return parts[0] + f"<p class='empty'>No data for this plot in these runs: {html.escape(why)}.</p>"
    data = base64.b64encode(plots.files[plot_key].read_bytes()).decode("ascii")
    parts.append(f"<img alt='{html.escape(title)}' src='data:image/png;base64,{data}'>")
    if plot_key == "latency_vs_resolution" and exps:
        parts.append("<ul>" + "".join(f"<li>{html.escape(k)}: latency ∝ pixels<sup>{v:.2f}</sup></li>"
                                      for k, v in sorted(exps.items())) + "</ul>")
    if plot_key == "memory_predicted_vs_measured":
        parts.append(memory_prediction_html(records))
    if plot_key.startswith("accuracy_vs_"):
        parts.append(accuracy_front_html(records, plot_key))
    return "".join(parts)


def _head(records: list[Record], envs: list[Record], paths: Sequence[Path | str]) -> str:
    """The page up to the interactive charts: title, what was read, the machine(s)."""
    machines = "".join(f"<p class='machine'>Machine: {html.escape(machine_line(env))}.</p>" for env in envs)
    return ("<!doctype html><html lang='en'><head><meta charset='utf-8'><title>lvmharness report</title>"
            f"<style>{STYLE}</style></head><body><h1>lvmharness report</h1>"
            f"<p>{len(records)} records from {len(paths)} run(s): {html.escape(', '.join(str(p) for p in paths))}. "
            "MACs = multiply-accumulates; FLOPs = 2 × MACs. CSV: <a href='results.csv'>results.csv</a>.</p>"
            + machines)


def write_report(records: list[Record], envs: list[Record], paths: Sequence[Path | str],
                 out: Path | str) -> dict[str, Path]:
    """Write ``report.html``, ``results.csv`` and the PNG plots of ``records`` into ``out``; return their paths."""
    out_dir = _output_dir(out)
    rows = csv_rows(records)
    csv_path = write_csv(rows, out_dir / "results.csv")
    plots = Plots(out_dir)
    sections, exps = _png_sections(records, plots)
    interactive, _ = interactive_html(records)
    parts = [_head(records, envs, paths), interactive, "<h2>Static plots (PNG)</h2>"]
    parts += [_section_html(s, records, plots, exps) for s in sections]
    parts += [contended_section(records), "<h2>All cases</h2>",
              html_table(rows, SUMMARY_COLUMNS) if rows else "<p class='empty'>No records.</p>", "</body></html>"]
    html_path = out_dir / "report.html"
    html_path.write_text("".join(parts), encoding="utf-8")
    return {"html": html_path, "csv": csv_path, **plots.files}
