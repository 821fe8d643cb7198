"""Series out of a history (or a plain CSV), their segments, and the change points found in them.

A series is one case id x value key x machine fingerprint. A chart (a ``Track``) shows one case id x value key
over the commits, its points split into segments wherever the machine fingerprint or the case's benchmark
definition (``lvmharness.history.store.definition_hash``) changes: a new machine or a new definition is a new
experiment, never a regression, and nobody has to mark it by hand. Detection runs inside each segment only.

Contended points (measured while other processes took the machine) stay in the track, drawn apart, and are left
out of detection and of baselines. Values tracked: every numeric value key of ``lvmharness.store.keys`` with a
direction or the ``exact`` rule; ``exact`` keys (counted, deterministic) alert on any change.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvmharness.history import detect
from lvmharness.history.store import History, HistoryError, definition_hash
from lvmharness.store import keys
from lvmharness.store.records import is_contended


@dataclass
class Point:
    commit: str
    value: float
    contended: bool = False
    samples: list[float] | None = None
    run_id: str = ""
    time_utc: str = ""
    seq: int = -1  # position in the track's commit order (all machines together), for drawing


@dataclass
class Segment:
    fingerprint: str
    definition: str
    points: list[Point] = field(default_factory=list)


@dataclass(frozen=True)
class Alert:
    series: str  # case_id|key|fingerprint
    case_id: str
    key: str
    fingerprint: str
    segment: int  # index of the segment in its track
    commit: str  # the first commit at the new level
    label: str
    magnitude: float
    z: float
    before: float
    after: float
    points_after: int
    deterministic: bool
    kind: str = "step"  # step | drift (``detect.Change.kind``)

    def as_dict(self) -> dict[str, Any]:
        return {k: (v if not isinstance(v, float) or math.isfinite(v) else None) for k, v in self.__dict__.items()}


@dataclass
class Track:
    case_id: str
    key: str
    better: str | None
    exact: bool
    unit: str
    segments: list[Segment] = field(default_factory=list)
    alerts: list[Alert] = field(default_factory=list)

    @property
    def name(self) -> str:
        return f"{self.case_id}|{self.key}"

    def add(self, fingerprint: str, definition: str, point: Point) -> None:
        """Append a point to its machine's latest segment, or open a new segment when that machine has none yet or
        the definition changed. Machines interleaved in time (CI runners of two CPU types) stay two series."""
        point.seq = sum(len(s.points) for s in self.segments)
        mine = [s for s in self.segments if s.fingerprint == fingerprint]
        if not mine or mine[-1].definition != definition:
            self.segments.append(Segment(fingerprint, definition))
            mine = [self.segments[-1]]
        mine[-1].points.append(point)


def _tracked(name: str, value: Any) -> keys.Key | None:
    key = keys.get(name)
    if key is None or isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return None
    if key.rule == "exact" or (key.better is not None and key.rule != "flag"):
        return key
    return None


def tracks_from_history(history: History, branch: str | None = None, *,
                        case_filter: str | None = None) -> list[Track]:
    """Every tracked value of every ok record of the branch's runs, in commit order."""
    by_name: dict[tuple[str, str], Track] = {}
    for entry in history.entries_of(branch):
        for rec in history.records(entry):
            if rec.get("status") != "ok" or (case_filter and case_filter not in str(rec.get("case_id"))):
                continue
            fp = str(rec.get("fingerprint") or entry["fingerprint"])
            definition = definition_hash(rec)
            busy = is_contended(rec)
            values = rec.get("values") or {}
            for name, value in values.items():
                key = _tracked(name, value)
                if key is None:
                    continue
                samples = values.get(key.samples) if key.samples else None
                if not (isinstance(samples, list) and all(isinstance(s, int | float) for s in samples)):
                    samples = None
                t = by_name.get((rec["case_id"], name))
                if t is None:
                    t = by_name[(rec["case_id"], name)] = Track(rec["case_id"], name, key.better,
                                                              key.rule == "exact", key.unit)
                t.add(fp, definition, Point(entry["commit"], float(value), busy, samples, entry["run_id"],
                                            entry["time_utc"]))
    return [by_name[k] for k in sorted(by_name)]


_TRUE = {"1", "true", "yes", "contended"}
_FALSE = {"", "0", "false", "no"}


def tracks_from_csv(path: Path | str, better: str = "lower") -> list[Track]:
    """A plain CSV ``series,commit,value[,contended]`` (rows in commit order, an optional header line): each
    series is one segment of one track (other tools have no fingerprints), direction ``better``."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise HistoryError(f"{p}: cannot read the CSV ({exc})") from None
    by_name: dict[str, Track] = {}
    for i, row in enumerate(csv.reader(text.splitlines()), 1):
        if not row or all(not c.strip() for c in row):
            continue
        if i == 1 and [c.strip().lower() for c in row[:3]] == ["series", "commit", "value"]:
            continue
        if len(row) not in (3, 4):
            raise HistoryError(f"{p}:{i}: {len(row)} columns; expected series,commit,value[,contended]")
        name, commit, raw = row[0].strip(), row[1].strip(), row[2].strip()
        try:
            value = float(raw)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise HistoryError(f"{p}:{i}: value {raw!r} is not a finite number (expected series,commit,value"
                               "[,contended] with a number such as 12.5 in the value column)")
        flag = row[3].strip().lower() if len(row) == 4 else ""
        if flag not in _TRUE | _FALSE:
            raise HistoryError(f"{p}:{i}: contended {row[3]!r} is not one of true/false/1/0 (or empty)")
        if not name or not commit:
            raise HistoryError(f"{p}:{i}: empty series or commit; expected series,commit,value[,contended]")
        t = by_name.get(name)
        if t is None:
            t = by_name[name] = Track(name, "value", better, False, "1")
        t.add("csv", "csv", Point(commit, value, flag in _TRUE))
    if not by_name:
        raise HistoryError(f"{p}: no rows; expected lines of series,commit,value[,contended]")
    return list(by_name.values())


def detect_track(track: Track, params: detect.Params | None = None) -> list[Alert]:
    """Change points of every segment of a track (contended points left out), stored on the track too."""
    alerts: list[Alert] = []
    for si, seg in enumerate(track.segments):
        calm = [p for p in seg.points if not p.contended]
        values = [p.value for p in calm]
        if track.exact:
            changes = detect.detect_exact(values, track.better)
        else:
            if any(v <= 0 for v in values):  # log scale: a zero or negative value cannot be a relative change
                continue
            samples: Sequence[Sequence[float] | None] | None = [p.samples for p in calm] \
                if any(p.samples for p in calm) else None
            changes = detect.detect_measured(values, track.better, params, samples)
        series = f"{track.case_id}|{track.key}|{seg.fingerprint}" if track.key != "value" else track.case_id
        alerts += [Alert(series, track.case_id, track.key, seg.fingerprint, si, calm[c.index].commit, c.label,
                         c.magnitude, c.z, c.before, c.after, c.points_after, track.exact, c.kind)
                   for c in changes]
    track.alerts = alerts
    return alerts


def detect_all(tracks: Iterable[Track], params: detect.Params | None = None) -> list[Alert]:
    out: list[Alert] = []
    for t in tracks:
        out += detect_track(t, params)
    return out


def open_regressions(tracks: Iterable[Track], params: detect.Params | None = None) -> list[Alert]:
    """Regressions not undone since: on each machine, the last confirmed change of the track's latest segment
    there is a regression (a later segment on another machine does not close it: that machine never saw the
    level before)."""
    p = params or detect.Params()
    out = []
    for t in tracks:
        latest: dict[str, int] = {}
        for si, seg in enumerate(t.segments):
            latest[seg.fingerprint] = si
        for si in sorted(latest.values()):
            confirmed = [a for a in t.alerts if a.segment == si and a.label != detect.SUSPICIOUS]
            if confirmed and confirmed[-1].label == detect.REGRESSION \
                    and (confirmed[-1].deterministic or abs(confirmed[-1].magnitude) >= p.min_magnitude):
                out.append(confirmed[-1])
    return out


def median_interval(samples: Sequence[float], confidence: float = 0.95) -> tuple[float, float] | None:
    """A distribution-free confidence interval of the median from order statistics (Conover 1999, Practical
    Nonparametric Statistics, sec. 3.2): the ranks whose Binomial(n, 1/2) tail holds (1 - confidence)/2."""
    xs = sorted(s for s in samples if isinstance(s, int | float) and math.isfinite(s))
    n = len(xs)
    if n < 6:  # below 6 samples no pair of ranks reaches 95 %: 2 x 0.5^6 = 3.1 %, 0.5^5 x 2 = 6.25 %
        return None
    alpha = (1 - confidence) / 2
    cdf, k = 0.0, 0
    while True:
        nxt = cdf + math.comb(n, k) / 2 ** n
        if nxt > alpha:
            break
        cdf, k = nxt, k + 1
    if k == 0:
        return None
    return xs[k - 1], xs[n - k]


def point_dicts(track: Track) -> list[Mapping[str, Any]]:
    """Every point of a track with its segment, for exports and the site."""
    out: list[Mapping[str, Any]] = []
    for si, seg in enumerate(track.segments):
        for p in seg.points:
            out.append({"segment": si, "fingerprint": seg.fingerprint, "commit": p.commit, "value": p.value,
                        "contended": p.contended, "run_id": p.run_id, "time_utc": p.time_utc,
                        "interval": median_interval(p.samples) if p.samples else None})
    return out
