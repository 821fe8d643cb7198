"""``lvm report RUN_DIR [-o OUT]``: a self-contained HTML page, PNG plots and a CSV from one or more runs
(:mod:`lvmharness.report.render` writes them; this module parses and prints)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lvmharness.core.argtypes import output_folder
from lvmharness.core.outputs import check_output_folder
from lvmharness.report import busy as report_busy
from lvmharness.report.records import load_runs
from lvmharness.report.render import write_report
from lvmharness.store.loading import torn_lines


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("runs", nargs="+", help="run folders (results/<run-id>) or results.json files")
    p.add_argument("-o", "--output", type=output_folder, default=None,
                   help="folder to write (default: <first run>/report)")


def run(args: argparse.Namespace) -> int:
    runs = [Path(r) for r in args.runs]
    out = args.output if args.output else (runs[0] if runs[0].is_dir() else runs[0].parent) / "report"
    out = check_output_folder(out, what="report folder")  # the default too, before anything is read or written
    records, envs = load_runs(runs)
    for note in (n for r in runs for n in torn_lines(r)):
        print(f"lvm report: {note}", file=sys.stderr)
    files = write_report(records, envs, runs, out)
    print(f"report: {files['html']}\ncsv:    {files['csv']}")
    _, busy = report_busy.split(records)
    if busy:
        print(f"contended: {len(busy)} record(s) measured on a busy machine (their times are not the model's): "
              + ", ".join(r["case_id"] for r in busy[:5]) + (", ..." if len(busy) > 5 else ""))
    for name, path in files.items():
        if name not in ("html", "csv"):
            print(f"plot:   {path}")
    return 0
