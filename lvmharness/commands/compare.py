"""``lvm compare BASE NEW``: two runs compared value by value, and an exit code a CI gate can trust.

0 no regression, 1 a regression (or a case of BASE missing from NEW, unless ``--allow-missing``), 2 bad input
(a non-finite or negative threshold, an unknown metric, a comparison that decided nothing). With
``--baseline history:BRANCH[~N]`` the base is pooled from the history (``lvmharness.history.gate``: exit 3 no
baseline, 4 inconclusive). The rules are ``lvmharness.store.rules``; this module parses and prints only.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from lvmharness.core.parsing import shorten
from lvmharness.store.rules import TOLERANCES, CompareError, Rules, is_tolerance

if TYPE_CHECKING:
    from lvmharness.store.compare import Comparison


def _tolerance(text: str) -> float:
    """argparse type of the threshold options (argparse itself names the option in its error)."""
    try:
        value = float(text) if text.isascii() else math.nan  # float() also reads '٥' (Arabic-Indic five)
    except ValueError:
        value = math.nan
    if not is_tolerance(value):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, got {shorten(text)!r}")
    return value


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("base")
    p.add_argument("new", nargs="?")
    p.add_argument("--metric", action="append", help="only these metrics (repeatable), e.g. --metric flops")
    for t in TOLERANCES.values():
        p.add_argument(t.option, dest=t.field, type=_tolerance, default=t.default, help=t.help)
    p.add_argument("--cross-machine", action="store_true",
                   help="also decide latency/memory of records measured on different machines (fingerprints)")
    p.add_argument("--all", action="store_true", help="also list values that did not change")
    p.add_argument("--baseline", help="history:BRANCH[~N]: pool the last N uncontended runs of BRANCH on this "
                   "machine as BASE (then the one positional is NEW); exit 3 no baseline, 4 inconclusive")
    p.add_argument("--history", help="history folder for --baseline (default $LVM_HISTORY or .lvm-history)")
    p.add_argument("--allow-missing", action="store_true",
                   help="pass even when cases of BASE are missing from NEW (a partial run); default: exit 1")


def _rules(args: argparse.Namespace) -> Rules:
    return Rules(cross_machine=args.cross_machine, **{name: getattr(args, name) for name in TOLERANCES})


def run(args: argparse.Namespace) -> int:
    # Imported when a comparison runs, not for ``lvm compare --help`` (its options need only the rules table):
    # the record readers and the history store are some tens of milliseconds of a CI gate's start.
    from lvmharness.history import gate
    from lvmharness.store.compare import compare_paths
    from lvmharness.store.loading import torn_lines

    if args.baseline or gate.is_spec(args.base):  # a history baseline: the gate pools it, then compares as below
        if args.baseline and args.new is not None:
            raise CompareError("with --baseline give only NEW (the baseline comes from the history)")
        spec, new = (args.baseline, args.base) if args.baseline else (args.base, args.new)
        if new is None:
            raise CompareError(f"{spec} needs a NEW run folder to compare")
        return _history_gate(args, spec, new, _rules(args))
    if args.new is None:
        raise CompareError("lvm compare needs BASE and NEW (or NEW --baseline history:BRANCH[~N])")
    result = compare_paths(args.base, args.new, _rules(args), args.metric or None)
    for note in (n for r in (args.base, args.new) for n in torn_lines(r)):
        print(f"lvm compare: {note}", file=sys.stderr)
    return _verdict(args, result)


def _verdict(args: argparse.Namespace, result: Comparison) -> int:
    print(result.table(show_all=args.all))
    counts = result.counts()
    print("\n" + (", ".join(f"{v} {k}" for k, v in counts.items()) or "no records"))
    if not result.decided:
        raise CompareError(f"nothing was compared between {args.base} and {args.new} "
                           f"({', '.join(f'{v} {k}' for k, v in counts.items()) or 'no cases'}): the gate decided "
                           "nothing, so it cannot pass")
    n = len(result.regressions)
    if n:
        print(f"FAIL: {n} regression(s) of {args.new} against {args.base}", file=sys.stderr)
        return 1
    missing = [f.case_id for f in result.findings if f.verdict == "missing"]
    if missing and not args.allow_missing:
        shown = ", ".join(missing[:5]) + (f", ... ({len(missing)} in all)" if len(missing) > 5 else "")
        print(f"FAIL: {len(missing)} case(s) of {args.base} are missing from {args.new} ({shown}): a killed or "
              "partial run cannot pass the gate; pass --allow-missing to judge only the cases both have",
              file=sys.stderr)
        return 1
    print(f"OK: no regression of {args.new} against {args.base} ({result.decided} values decided)")
    return 0


def _history_gate(args: argparse.Namespace, spec: str, new_path: str, rules: Rules) -> int:
    """``--baseline history:BRANCH[~N]``: compare NEW with the branch's pooled history (``lvmharness.history.gate``);
    exit 3 without a baseline, 4 when nothing measured could be decided."""
    from lvmharness.history.gate import EXIT_INCONCLUSIVE, EXIT_NO_BASELINE, absent_cases, parse_spec, pooled_baseline
    from lvmharness.history.store import History
    from lvmharness.store import keys
    from lvmharness.store.compare import compare_records
    from lvmharness.store.loading import load_records

    branch, n = parse_spec(spec)
    root = getattr(args, "history", None) or os.environ.get("LVM_HISTORY") or ".lvm-history"
    if not Path(root).exists():  # a CI cache that missed (the first run on a new runner): nothing to compare with
        print(f"NO BASELINE: history folder {root} does not exist (yet)", file=sys.stderr)
        return EXIT_NO_BASELINE
    history = History(Path(root))
    new = load_records(new_path)
    if args.metric:
        new = [r for r in new if r["metric"] in args.metric]
    base, missing = pooled_baseline(history, branch, n, new)
    for case in missing:
        print(f"no baseline  {case}  (no uncontended run of it on this machine in {branch})")
    if not base:
        print(f"NO BASELINE: history {root} has no uncontended run of these cases on this machine in branch "
              f"{branch!r}", file=sys.stderr)
        return EXIT_NO_BASELINE
    result = compare_records(base, new, rules, args.metric or None)
    result.findings = [f for f in result.findings if f.verdict != "missing"]  # cases not run this time
    print(result.table(show_all=args.all))
    counts = result.counts()
    print("\n" + (", ".join(f"{v} {k}" for k, v in counts.items()) or "no records"))
    if result.regressions:
        print(f"FAIL: {len(result.regressions)} regression(s) of {new_path} against {spec}", file=sys.stderr)
        return 1
    absent = absent_cases(history, branch, new, args.metric or None)
    if absent and not getattr(args, "allow_missing", False):
        shown = ", ".join(absent[:5]) + (f", ... ({len(absent)} in all)" if len(absent) > 5 else "")
        print(f"FAIL: {len(absent)} case(s) of {spec}'s newest run are missing from {new_path} ({shown}): a killed "
              "or partial run cannot pass the gate; pass --allow-missing to judge only the cases both have",
              file=sys.stderr)
        return 1
    measured_decided = [f for f in result.findings if f.verdict in ("regression", "improvement", "noise", "same")
                        and (keys.get(f.key) is None or keys.get(f.key).measured)]  # type: ignore[union-attr]
    if not result.decided or (not measured_decided and counts.get("inconclusive")):
        print(f"INCONCLUSIVE: nothing measured could be decided against {spec} "
              f"({', '.join(f'{v} {k}' for k, v in counts.items())})", file=sys.stderr)
        return EXIT_INCONCLUSIVE
    print(f"OK: no regression of {new_path} against {spec} ({result.decided} values decided)")
    return 0
