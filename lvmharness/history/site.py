"""``lvm history site -o DIR``: ``index.html`` (one page, plotly.js inline, nothing fetched from the network) and
``summary.md`` (for a PR comment or ``$GITHUB_STEP_SUMMARY``).

Each track (case id x value key) gets a chart: each segment (machine fingerprint x benchmark definition) its own
colour with the median's 95 % interval from the raw samples as error bars, segment starts as dotted lines,
change points as solid lines (red regression, green improvement, orange suspicious), contended points as grey
open crosses that no line joins (they are kept, not used). Tracks with change points come first. Above the charts:
a table of the open regressions.
"""

from __future__ import annotations

import html
import json
import math
from pathlib import Path
from typing import Any

from lvmharness.core.fileio import atomic_write
from lvmharness.history import detect
from lvmharness.history.series import (
    Alert,
    Segment,
    Track,
    detect_all,
    median_interval,
    open_regressions,
    tracks_from_history,
)
from lvmharness.history.store import History, HistoryError
from lvmharness.report.charts import plotly_script

COLORS = {"regression": "#d62728", "improvement": "#2ca02c", "suspicious": "#ff7f0e"}
SEGMENT_COLORS = ("#1f77b4", "#9467bd", "#8c564b", "#17becf", "#bcbd22", "#e377c2")


def _mag(a: Alert) -> str:
    return f"{a.magnitude:+.1%}" if math.isfinite(a.magnitude) else "from 0"


def _segment_start(si: int, seg: Segment) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A dotted line and its label where segment ``si`` (> 0) starts: another machine or benchmark definition."""
    if not si or not seg.points:
        return [], []
    x0 = seg.points[0].seq - 0.5
    return ([{"type": "line", "x0": x0, "x1": x0, "yref": "paper", "y0": 0, "y1": 1,
              "line": {"color": "#777", "dash": "dot", "width": 1}}],
            [{"x": x0, "yref": "paper", "y": 1.0, "text": f"segment {si}", "showarrow": False, "xanchor": "left",
              "font": {"size": 10, "color": "#555"}}])


def _add_segment(fig: Any, si: int, seg: Segment, ticks: list[tuple[int, str]],
                 positions: dict[tuple[int, int], int]) -> None:
    """Segment ``si``'s traces: its uncontended points joined, with the median's 95 % interval as error bars, and
    its contended points as grey open crosses. Fills ``ticks`` (x, commit) and ``positions``."""
    import plotly.graph_objects as go

    calm_x: list[int] = []
    calm_y, calm_text, lo, hi = [], [], [], []
    busy_x, busy_y, busy_text = [], [], []
    for p in seg.points:
        label = f"{p.commit[:12]} run {p.run_id}"
        ticks.append((p.seq, p.commit[:8]))
        if p.contended:
            busy_x.append(p.seq)
            busy_y.append(p.value)
            busy_text.append(label + " (contended: excluded)")
            continue
        positions[(si, len(calm_x))] = p.seq  # (segment, index among its uncontended points) -> x
        calm_x.append(p.seq)
        calm_y.append(p.value)
        calm_text.append(label)
        ci = median_interval(p.samples) if p.samples else None
        lo.append(p.value - ci[0] if ci else 0.0)
        hi.append(ci[1] - p.value if ci else 0.0)
    color = SEGMENT_COLORS[si % len(SEGMENT_COLORS)]
    fig.add_trace(go.Scatter(
        x=calm_x, y=calm_y, text=calm_text, mode="lines+markers", line={"color": color},
        name=f"segment {si}: machine {seg.fingerprint[:8]}, definition {seg.definition[:8]}",
        error_y={"type": "data", "array": hi, "arrayminus": lo, "visible": any(hi) or any(lo)}))
    if busy_x:
        fig.add_trace(go.Scatter(x=busy_x, y=busy_y, text=busy_text, mode="markers",
                                 marker={"symbol": "x-open", "color": "#999", "size": 9},
                                 name=f"segment {si}: contended (excluded)"))


def _alert_marks(track: Track, positions: dict[tuple[int, int], int]) -> tuple[list[dict[str, Any]],
                                                                                  list[dict[str, Any]]]:
    """A solid line (red regression, green improvement, orange suspicious) before each change point's first point."""
    shapes: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for a in track.alerts:
        calm = sum(not p.contended for p in track.segments[a.segment].points)
        pos = positions.get((a.segment, calm - a.points_after))
        if pos is None:
            continue
        shapes.append({"type": "line", "x0": pos - 0.5, "x1": pos - 0.5, "yref": "paper", "y0": 0, "y1": 1,
                       "line": {"color": COLORS[a.label], "width": 2}})
        text = f"{a.label} {_mag(a)}" + (" drift" if a.kind == "drift" else "")
        annotations.append({"x": pos - 0.5, "yref": "paper", "y": 0.92, "text": text,
                            "showarrow": False, "xanchor": "right", "font": {"size": 11, "color": COLORS[a.label]}})
    return shapes, annotations


def figure(track: Track) -> Any:
    """One track's chart: a trace per segment, segment starts dotted, change points solid, commits on the x axis."""
    import plotly.graph_objects as go

    fig = go.Figure()
    ticks: list[tuple[int, str]] = []
    positions: dict[tuple[int, int], int] = {}
    shapes: list[dict[str, Any]] = []
    annotations: list[dict[str, Any]] = []
    for si, seg in enumerate(track.segments):
        seg_shapes, seg_notes = _segment_start(si, seg)
        shapes += seg_shapes
        annotations += seg_notes
        _add_segment(fig, si, seg, ticks, positions)
    alert_shapes, alert_notes = _alert_marks(track, positions)
    ticks.sort()
    step = max(1, len(ticks) // 30)  # at most ~30 commit labels under a chart
    xaxis = {"title": "commit (oldest first)", "tickmode": "array", "tickvals": [t[0] for t in ticks[::step]],
             "ticktext": [t[1] for t in ticks[::step]], "tickangle": -45}
    fig.update_layout(title={"text": html.escape(track.name), "font": {"size": 13}}, height=320,
                      margin={"l": 60, "r": 20, "t": 40, "b": 40}, template="plotly_white",
                      shapes=shapes + alert_shapes, annotations=annotations + alert_notes, xaxis=xaxis,
                      yaxis={"title": f"{track.key} [{track.unit}]"}, legend={"font": {"size": 10}})
    return fig


def _table(rows: list[Alert]) -> str:
    if not rows:
        return "<p id='no-open-regressions'>No open regressions.</p>"
    head = "<tr><th>series</th><th>commit</th><th>change</th><th>before</th><th>after</th><th>points after</th></tr>"
    body = "".join(
        f"<tr class='open-regression'><td><a href='#{_anchor(a.case_id, a.key)}'>{html.escape(a.series)}</a></td>"
        f"<td><code>{html.escape(a.commit[:12])}</code></td><td>{_mag(a)}</td><td>{a.before:.6g}</td>"
        f"<td>{a.after:.6g}</td><td>{a.points_after}</td></tr>" for a in rows)
    return f"<table id='open-regressions'>{head}{body}</table>"


def _anchor(case_id: str, key: str) -> str:
    return "t-" + "".join(c if c.isalnum() else "-" for c in f"{case_id}-{key}")


def markdown(tracks: list[Track], alerts: list[Alert], open_regs: list[Alert]) -> str:
    counts = {label: sum(a.label == label for a in alerts) for label in COLORS}
    lines = ["## Performance history", "",
             f"{len(tracks)} series, {sum(len(t.segments) for t in tracks)} segments: "
             f"{counts['regression']} regressions, {counts['improvement']} improvements, "
             f"{counts['suspicious']} suspicious; **{len(open_regs)} open regression(s)**.", ""]
    if open_regs:
        lines += ["| series | commit | change | before | after |", "|---|---|---|---|---|"]
        lines += [f"| `{a.series}` | `{a.commit[:12]}` | {_mag(a)} | {a.before:.6g} | {a.after:.6g} |"
                  for a in open_regs]
        lines.append("")
    return "\n".join(lines) + "\n"


# Draws a section's chart when it comes within 1,500 px of the viewport (and every chart where the browser has no
# IntersectionObserver); window.lvmDrawAll() draws the rest at once (printing, tests).
DRAW_ON_SIGHT = """(function () {
  var sections = Array.prototype.slice.call(document.querySelectorAll("section.track"));
  function draw(sec) {
    if (sec.dataset.drawn) return;
    sec.dataset.drawn = "1";
    var fig = JSON.parse(sec.querySelector("script.figure").textContent);
    Plotly.newPlot(sec.querySelector("div.chart"), fig.data, fig.layout, {displaylogo: false});
  }
  window.lvmDrawAll = function () { sections.forEach(draw); };
  if (!("IntersectionObserver" in window)) { window.lvmDrawAll(); return; }
  var seen = new IntersectionObserver(function (entries) {
    entries.forEach(function (e) { if (e.isIntersecting) { seen.unobserve(e.target); draw(e.target); } });
  }, {rootMargin: "1500px 0px"});
  sections.forEach(function (sec) { seen.observe(sec); });
})();"""


def render(tracks: list[Track], alerts: list[Alert], open_regs: list[Alert], title: str) -> str:
    import plotly.io as pio

    ordered = sorted(tracks, key=lambda t: (not t.alerts, t.name))
    charts = []
    for i, t in enumerate(ordered):
        # The figure as JSON beside an empty div: DRAW_ON_SIGHT draws it when it nears the viewport. Drawing
        # every chart at load took 49 s for 546 series on a 2-core machine (headless chromium).
        fig = pio.to_json(figure(t), validate=False).replace("</", "<\\/")
        charts.append(f"<section class='track' data-alerts='{len(t.alerts)}' data-segments='{len(t.segments)}' "
                      f"data-index='{i}'><div class='chart' id='{_anchor(t.case_id, t.key)}'></div>"
                      f"<script type='application/json' class='figure'>{fig}</script></section>")
    data = {"tracks": len(tracks), "alerts": [a.as_dict() for a in alerts],
            "open_regressions": [a.as_dict() for a in open_regs]}
    blob = json.dumps(data).replace("</", "<\\/")
    return ("<!doctype html><html><head><meta charset='utf-8'><title>" + html.escape(title) + "</title>"
            "<style>body{font-family:sans-serif;margin:1em 2em}table{border-collapse:collapse}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}section.track{min-height:330px}</style>"
            + plotly_script() + "</head><body>"
            f"<h1>{html.escape(title)}</h1><p>{len(tracks)} series; {len(alerts)} change points. Contended points "
            "are grey crosses (kept, excluded from detection); dotted lines start a new segment (another machine or "
            "benchmark definition).</p><h2>Open regressions</h2>" + _table(open_regs) +
            f"<script id='history-data' type='application/json'>{blob}</script>"
            "<h2>Series</h2>" + "".join(charts) + f"<script>{DRAW_ON_SIGHT}</script></body></html>\n")


def write_site(history: History, out: Path, *, branch: str | None = None, params: detect.Params | None = None,
               case_filter: str | None = None) -> Path:
    if out.exists() and not out.is_dir():
        raise HistoryError(f"{out} is a file: pass a folder for the site (it is created when missing)")
    tracks = tracks_from_history(history, branch, case_filter=case_filter)
    if not tracks:
        raise HistoryError(f"history {history.root} has no tracked values to draw"
                           + (f" for cases containing {case_filter!r}" if case_filter else ""))
    alerts = detect_all(tracks, params)
    open_regs = open_regressions(tracks, params)
    page = render(tracks, alerts, open_regs, f"Performance history{f' of {branch}' if branch else ''}")
    md = markdown(tracks, alerts, open_regs)
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(out / "index.html", lambda fh: fh.write(page.encode("utf-8")))
    atomic_write(out / "summary.md", lambda fh: fh.write(md.encode("utf-8")))
    return out
