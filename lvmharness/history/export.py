"""Exports of a history for the tools people already run.

- ``bmf``: Bencher Metric Format (https://bencher.dev/docs/reference/bencher-metric-format/): an object
  ``{benchmark: {measure: {"value", "lower_value"?, "upper_value"?}}}`` for one commit; the benchmark is the case
  id, the measure our value key (its unit is in the name), the bounds the median's 95 % interval from the raw
  samples where the record has them.
- ``gab-smaller`` / ``gab-bigger``: github-action-benchmark's ``customSmallerIsBetter`` / ``customBiggerIsBetter``
  input (https://github.com/benchmark-action/github-action-benchmark#examples): a JSON list of
  ``{"name", "unit", "value", "range"?, "extra"?}`` for one commit, keys of that direction only.
- ``csv``: ``series,commit,value,contended`` for every point in commit order, the format ``lvm history detect
  --csv`` (and other change-point tools) read.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from lvmharness.core.fileio import atomic_write
from lvmharness.history.series import Track, median_interval, tracks_from_history
from lvmharness.history.store import History, HistoryError

FORMATS = ("bmf", "gab-smaller", "gab-bigger", "csv")


def _latest(tracks: list[Track], commit: str | None) -> tuple[str, list[tuple[Track, Any]]]:
    """The points of one commit (the latest when None) and the commit."""
    commits = [p.commit for t in tracks for s in t.segments for p in s.points]
    if not commits:
        raise HistoryError("the history has no points to export")
    if commit is None:
        commit = max((p.time_utc, p.commit) for t in tracks for s in t.segments for p in s.points)[1]
    else:
        matches = sorted({c for c in commits if c.startswith(commit)})
        if len(matches) != 1:
            raise HistoryError(f"commit {commit!r} matches {len(matches)} commits of the history; give a longer "
                               "prefix of one that `lvm history list` shows")
        commit = matches[0]
    chosen = []
    for t in tracks:
        pts = [p for s in t.segments for p in s.points if p.commit == commit and not p.contended]
        if pts:
            chosen.append((t, pts[-1]))
    return commit, chosen


def bmf(tracks: list[Track], commit: str | None = None) -> dict[str, Any]:
    _, chosen = _latest(tracks, commit)
    out: dict[str, dict[str, dict[str, float]]] = {}
    for t, p in chosen:
        metric: dict[str, float] = {"value": p.value}
        ci = median_interval(p.samples) if p.samples else None
        if ci is not None and ci[0] <= p.value <= ci[1]:
            metric["lower_value"], metric["upper_value"] = float(ci[0]), float(ci[1])
        out.setdefault(t.case_id, {})[t.key] = metric
    return out


def gab(tracks: list[Track], better: str, commit: str | None = None) -> list[dict[str, Any]]:
    sha, chosen = _latest(tracks, commit)
    out = []
    for t, p in chosen:
        if t.better != better:
            continue
        item: dict[str, Any] = {"name": f"{t.case_id} {t.key}", "unit": t.unit, "value": p.value}
        ci = median_interval(p.samples) if p.samples else None
        if ci is not None:
            item["range"] = f"{ci[0]:.6g}..{ci[1]:.6g} (95% CI of the median)"
        item["extra"] = f"commit {sha[:12]}, run {p.run_id}"
        out.append(item)
    return out


def csv_text(tracks: list[Track]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(["series", "commit", "value", "contended"])
    for t in tracks:
        for seg in t.segments:
            for p in seg.points:
                w.writerow([f"{t.case_id}|{t.key}|{seg.fingerprint}", p.commit, repr(p.value),
                            "true" if p.contended else "false"])
    return buf.getvalue()


def write(history: History, fmt: str, out: Path, *, branch: str | None = None, commit: str | None = None) -> int:
    if fmt not in FORMATS:
        raise HistoryError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    if out.is_dir():
        raise HistoryError(f"{out} is a folder: pass a file name for the export")
    tracks = tracks_from_history(history, branch)
    if fmt == "csv":
        text = csv_text(tracks)
        n = text.count("\n") - 1
    else:
        obj: Any = bmf(tracks, commit) if fmt == "bmf" else gab(tracks, fmt.split("-")[1].replace(
            "smaller", "lower").replace("bigger", "higher"), commit)
        text = json.dumps(obj, indent=1, allow_nan=False) + "\n"
        n = len(obj)
    atomic_write(out, lambda fh: fh.write(text.encode("utf-8")))
    return n
