"""The report's tables: ``results.csv`` (timm's benchmark columns beside ours) and the HTML tables of the page.

Torch-free.
"""

from __future__ import annotations

import csv
import html
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lvmharness.report import busy as report_busy
from lvmharness.report.records import Record, static_by_model
from lvmharness.store import keys

# Identity, then the columns timm's benchmark CSV uses (derived here), then every value key declared for the CSV
# in ``lvmharness.store.keys`` (in table order), then the error text.
IDENTITY_COLUMNS = ("case_id", "metric", "model", "alias", "family", "device", "dtype", "batch_size", "img_size",
                    "phase", "status")
DERIVED_COLUMNS = ("param_count", "gmacs", "infer_step_time", "infer_samples_per_sec", "train_samples_per_sec")
CSV_COLUMNS = (*IDENTITY_COLUMNS, *DERIVED_COLUMNS, *keys.CSV_KEYS, "error")

# The page's table of all cases: identity, the headline value of each metric, the error.
SUMMARY_COLUMNS = ("metric", "alias", "device", "dtype", "batch_size", "img_size", "status", "contended",
                   "param_count", "gmacs", "latency_ms_p50", "infer_samples_per_sec", "mfu",
                   "instance_latency_ms_p90", "rss_peak_delta_bytes", "mem_allocated_peak_bytes", "epoch_s", "top1",
                   "error")


def csv_rows(records: list[Record]) -> list[dict[str, Any]]:
    """One row per record, in ``CSV_COLUMNS``; params in millions and GMACs per image (timm's units)."""
    static = static_by_model(records)
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


def write_csv(rows: list[dict[str, Any]], path: Path) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=CSV_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    return path


def html_table(rows: list[dict[str, Any]], columns: Sequence[str]) -> str:
    """An HTML table of ``rows`` (floats to 4 significant digits, None as an empty cell), every text escaped."""
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


def contended_section(records: list[Record]) -> str:
    """The records measured while other processes took the machine, with what the machine gave them; '' if none."""
    _, busy = report_busy.split(records)
    if not busy:
        return ""
    cols = ("case_id", "cpu_share", "other_load_cores", "latency_ms_p50")
    rows = [{"case_id": r["case_id"], **{k: r["values"].get(k) for k in cols[1:]}} for r in busy]
    return (f"<h2 id='contended'>Measured on a busy machine ({len(busy)} of {len(records)} records)</h2>"
            "<p>Other processes took the CPU while these cases were timed: their times measure the contention, not "
            "the model. <code>cpu_share</code> = process CPU time ÷ (wall time × threads); <code>other_load_cores"
            "</code> = cores busy with other processes. Re-run them on an idle machine; <code>lvm compare</code> "
            "calls them inconclusive.</p>"
            + html_table(rows, cols))
