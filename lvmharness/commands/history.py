"""``lvm history``: keep runs by commit and machine, find change points, export, publish a static page.

    lvm history add RUN [--commit SHA] [--branch B]     file a run folder (commit/branch default from git)
    lvm history list [--branch B] [--json]              the runs, oldest commit first
    lvm history detect [--branch B] [--csv FILE] [--json]   change points; exit 1 on an open regression
    lvm history prune (--keep-last N | --before DATE)   delete old runs (the index keeps a tombstone)
    lvm history merge SRC...                            runs of other histories (machines, shards) into this one
    lvm history export --format bmf|gab-smaller|gab-bigger|csv -o FILE
    lvm history site -o DIR                             one offline HTML page + summary.md

The history folder: ``--history DIR``, else ``$LVM_HISTORY``, else ``.lvm-history``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from collections.abc import Callable
from pathlib import Path

from lvmharness.core.argtypes import argument_type, int_at_least, output_file, output_folder
from lvmharness.core.errors import BadValueError
from lvmharness.core.parsing import parse_float, shorten

DEFAULT_HISTORY = ".lvm-history"


MAX_KEEP_LAST = 1_000_000  # runs per branch and machine: more is a typo
MAX_Z = 1000.0  # standard errors: a confirmation threshold beyond it never fires


def _positive_number(high: float) -> Callable[[str], float]:
    """A finite number in (0, high]: the detector's relative magnitude and its z threshold."""

    def parse(text: str) -> float:
        value = parse_float(text)
        if not (math.isfinite(value) and 0 < value <= high):
            raise BadValueError(f"must be a finite number > 0 and <= {high:g}, got {shorten(text)!r}")
        return value

    return argument_type(parse, "number")


def _params_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--min-magnitude", type=_positive_number(10.0), default=None,
                   help="smallest relative change reported, a fraction (default 0.01)")
    p.add_argument("--z-threshold", type=_positive_number(MAX_Z), default=None,
                   help="confirmation threshold in standard errors (default 5.0)")
    p.add_argument("--z-suspicious", type=_positive_number(MAX_Z), default=None,
                   help="threshold for a provisional 'suspicious' change among the newest 6 points (default 4.0, "
                        "and never above --z-threshold)")


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--history", default=None,
                   help=f"history folder (default $LVM_HISTORY or {DEFAULT_HISTORY})")
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    a = sub.add_parser("add", help="file a run folder under its commit and machine")
    a.add_argument("run", nargs="+", help="run folder(s)")
    a.add_argument("--commit", help="commit of the run (default: the run's env.json git_commit, else git HEAD)")
    a.add_argument("--branch", help="branch (default: $GITHUB_HEAD_REF/$GITHUB_REF_NAME, else git's)")
    ls = sub.add_parser("list", help="the runs in the history, oldest commit first")
    ls.add_argument("--branch")
    ls.add_argument("--json", action="store_true")
    d = sub.add_parser("detect", help="change points of every series; exit 1 on an open regression")
    d.add_argument("--branch")
    d.add_argument("--csv", help="read series from a CSV (series,commit,value[,contended]) instead of a history")
    d.add_argument("--higher-is-better", action="store_true", help="CSV values: higher is better")
    d.add_argument("--case", help="only case ids containing this text")
    d.add_argument("--json", action="store_true", help="print the change points as JSON")
    d.add_argument("--no-fail", action="store_true", help="exit 0 even with open regressions")
    _params_arguments(d)
    pr = sub.add_parser("prune", help="delete old runs (per branch and machine)")
    pr.add_argument("--keep-last", type=int_at_least(0, MAX_KEEP_LAST),
                    help="keep the newest N runs of each branch and machine")
    pr.add_argument("--before", help="delete runs whose commit time is before this ISO date")
    pr.add_argument("--branch")
    m = sub.add_parser("merge", help="add the runs of other history folders (other machines, shards)")
    m.add_argument("sources", nargs="+")
    e = sub.add_parser("export", help="Bencher Metric Format, github-action-benchmark JSON, or CSV")
    e.add_argument("--format", required=True, choices=("bmf", "gab-smaller", "gab-bigger", "csv"))
    e.add_argument("-o", "--output", required=True, type=output_file)
    e.add_argument("--branch")
    e.add_argument("--commit", help="bmf/gab: the commit to export (default: the latest)")
    s = sub.add_parser("site", help="one offline HTML page (charts, change points, open regressions) + summary.md")
    for action in (a, ls, d, pr, m, e, s):  # --history after the action works too (argparse.SUPPRESS: no override)
        action.add_argument("--history", default=argparse.SUPPRESS, help="history folder (as before the action)")
    s.add_argument("-o", "--output", required=True, type=output_folder,
                   help="folder to write index.html and summary.md into")
    s.add_argument("--branch")
    s.add_argument("--case", help="only case ids containing this text")
    _params_arguments(s)


def _history(args: argparse.Namespace, *, create: bool = False):  # type: ignore[no-untyped-def]
    from lvmharness.history.store import History

    root = args.history or os.environ.get("LVM_HISTORY") or DEFAULT_HISTORY
    if create or args.action == "prune":  # actions that write: the folder is checked before any work
        from lvmharness.core.outputs import check_output_folder

        check_output_folder(root, what="history folder")
    return History(root, create=create)


def _params(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from lvmharness.history.detect import Params

    kw = {}
    if args.min_magnitude is not None:
        kw["min_magnitude"] = args.min_magnitude
    if args.z_threshold is not None:
        kw["z_threshold"] = args.z_threshold
    if args.z_suspicious is not None:
        kw["z_suspicious"] = args.z_suspicious
    elif args.z_threshold is not None:  # a lower --z-threshold alone lowers the provisional one with it
        kw["z_suspicious"] = min(Params().z_suspicious, args.z_threshold)
    return Params(**kw)


def run(args: argparse.Namespace) -> int:
    action = args.action
    if action == "add":
        hist = _history(args, create=True)
        for r in args.run:
            e = hist.add(r, commit=args.commit, branch=args.branch)
            print(f"added {e['run_id']} commit {e['commit'][:12]} branch {e['branch']} machine {e['fingerprint']} "
                  f"({e['records']} records, contended share {e['contended_share']:.0%})")
        return 0
    if action == "list":
        entries = _history(args).entries_of(args.branch)
        if args.json:
            print(json.dumps(entries, indent=1))
            return 0
        for e in entries:
            print(f"{e['time_utc']}  {e['commit'][:12]}  {str(e['branch'])[:20]:20}  {e['fingerprint']}  "
                  f"{e['run_id']}  records={e['records']}  contended={e['contended_share']:.0%}  "
                  f"bench={e['bench_hash']}")
        print(f"{len(entries)} run(s)")
        return 0
    if action == "detect":
        return _detect(args)
    if action == "prune":
        pruned = _history(args).prune(keep_last=args.keep_last, before=args.before, branch=args.branch)
        print(f"pruned {len(pruned)} run(s)")
        return 0
    if action == "merge":
        from lvmharness.history.store import History

        hist = _history(args, create=True)
        sources = [History(s) for s in args.sources]  # every source checked before anything is copied
        total = sum(hist.merge_from(s) for s in sources)
        print(f"merged {total} run(s) into {hist.root}")
        return 0
    if action == "export":
        from lvmharness.history import export

        n = export.write(_history(args), args.format, Path(args.output), branch=args.branch, commit=args.commit)
        print(f"wrote {n} entries to {args.output}")
        return 0
    if action == "site":
        from lvmharness.history import site

        out = site.write_site(_history(args), Path(args.output), branch=args.branch, params=_params(args),
                              case_filter=args.case)
        print(f"wrote {out / 'index.html'} and {out / 'summary.md'}")
        return 0
    raise AssertionError(action)


def _detect(args: argparse.Namespace) -> int:
    from lvmharness.history import series as S

    params = _params(args)
    if args.csv:
        tracks = S.tracks_from_csv(args.csv, "higher" if args.higher_is_better else "lower")
    else:
        tracks = S.tracks_from_history(_history(args), args.branch, case_filter=args.case)
    alerts = S.detect_all(tracks, params)
    open_regs = S.open_regressions(tracks, params)
    if args.json:
        print(json.dumps({"params": params.__dict__, "series": sum(len(t.segments) for t in tracks),
                          "alerts": [a.as_dict() for a in alerts],
                          "open_regressions": [a.as_dict() for a in open_regs]}, indent=1))
    else:
        for a in alerts:
            mag = f"{a.magnitude:+.1%}" if a.magnitude == a.magnitude and abs(a.magnitude) != float("inf") else "new"
            kind = "  (a drift: it starts here)" if a.kind == "drift" else ""
            print(f"{a.label.upper() if a.label == 'regression' else a.label:12} {a.series}  at {a.commit[:12]}  "
                  f"{mag}  {a.before:.6g} -> {a.after:.6g}  ({a.points_after} point(s) after){kind}")
        print(f"{len(tracks)} track(s), {sum(len(t.segments) for t in tracks)} segment(s): "
              f"{len(alerts)} change point(s), {len(open_regs)} open regression(s)")
    if open_regs and not args.no_fail:
        print(f"FAIL: {len(open_regs)} open regression(s)", file=sys.stderr)
        return 1
    return 0
