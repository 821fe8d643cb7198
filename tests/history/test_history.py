"""The history store, series and segments, change points, the history gate of ``lvm compare``, exports."""

from __future__ import annotations

import json
import math
import multiprocessing
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from lvmharness.commands.main import main
from lvmharness.history import detect
from lvmharness.history.export import bmf, csv_text, gab
from lvmharness.history.series import (
    detect_all,
    median_interval,
    open_regressions,
    tracks_from_csv,
    tracks_from_history,
)
from lvmharness.history.store import History
from tests.helpers.history_helpers import FP_A, FP_B, make_run


def _history_of(tmp_path: Path, levels: list[float], *, macs: list[int] | None = None,
                fps: list[str] | None = None, contended: set[int] = frozenset(),  # type: ignore[assignment]
                branch: str = "main") -> History:
    hist = History(tmp_path / "hist", create=True)
    for i, lat in enumerate(levels):
        run = make_run(tmp_path / "runs", f"r{i:03d}", latency_ms=lat, macs=(macs or [1000] * len(levels))[i],
                       seed=i, contended=i in contended, fingerprint=(fps or [FP_A] * len(levels))[i])
        # repo: a folder outside any git checkout, so "c012" is a name, never an abbreviated SHA of this repository
        hist.add(run, commit=f"c{i:03d}", branch=branch, repo=tmp_path)
    return hist


# --- the store -----------------------------------------------------------------------------------------------------


def _add_after_barrier(start: Any, hist_dir: Path, runs: list[Path], commit: str) -> None:
    start.wait()
    rc = main(["history", "--history", str(hist_dir), "add", *map(str, runs), "--commit", commit, "--branch", "main"])
    sys.exit(rc)


def test_four_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    """4 processes each add 5 runs into one history at the same moment: all 20 entries and run folders are there."""
    runs = [make_run(tmp_path / "runs", f"w{w}r{i}", latency_ms=10.0, seed=w * 10 + i) for w in range(4)
            for i in range(5)]
    hist_dir = tmp_path / "hist"
    # Forked processes (four pids, four writers) start with the store already imported: the race is the point
    # here, not the interpreter's start-up.
    ctx = multiprocessing.get_context("fork")
    start = ctx.Barrier(4)
    procs = [ctx.Process(target=_add_after_barrier, args=(start, hist_dir, runs[w * 5:(w + 1) * 5], f"c{w}"))
             for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=120)
        assert p.exitcode == 0
    hist = History(hist_dir)
    entries = hist.entries()
    assert sorted(e["run_id"] for e in entries) == sorted(r.name for r in runs)
    assert len(list((hist_dir / "index").glob("*.jsonl"))) == 4  # one index file per writer
    for e in entries:
        assert len(hist.records(e)) == 2  # both cases of every run were copied whole


def test_entry_records_what_the_issue_lists(tmp_path: Path) -> None:
    hist = _history_of(tmp_path, [10.0, 10.0], contended={1})
    e = hist.entries()[1]
    for field in ("commit", "parents", "branch", "time_utc", "fingerprint", "contended_share", "harness_version",
                  "bench_hash"):
        assert field in e
    # one of the run's two ok records (the latency case) is contended: a share of 1/2
    assert e["contended_share"] == 0.5
    assert e["commit"] == "c001" and e["branch"] == "main" and e["fingerprint"] == FP_A


def test_commit_and_branch_default_from_git(tmp_path: Path) -> None:
    repo = tmp_path / "repo"
    repo.mkdir()
    git = ["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@t"]
    subprocess.run([*git, "init", "-q", "-b", "trunk"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "one"], check=True)
    subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", "two"], check=True)
    head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    parent = subprocess.run([*git, "rev-parse", "HEAD~1"], capture_output=True, text=True,
                            check=True).stdout.strip()
    run = make_run(tmp_path / "runs", "r0", latency_ms=5.0)
    e = History(tmp_path / "hist", create=True).add(run, repo=repo)
    assert (e["commit"], e["parents"], e["branch"]) == (head, [parent], "trunk")


def test_prune_keeps_the_newest_and_the_index_only_grows(tmp_path: Path) -> None:
    hist = _history_of(tmp_path, [10.0] * 5)
    lines_before = sum(len(p.read_text().splitlines()) for p in (hist.root / "index").glob("*.jsonl"))
    pruned = hist.prune(keep_last=2)
    assert [e["run_id"] for e in pruned] == ["r000", "r001", "r002"]
    assert [e["run_id"] for e in hist.entries()] == ["r003", "r004"]
    assert not hist.run_path(pruned[0]).exists()
    lines_after = sum(len(p.read_text().splitlines()) for p in (hist.root / "index").glob("*.jsonl"))
    assert lines_after == lines_before + 3  # three tombstones appended, nothing rewritten


def test_merge_of_two_machines_histories_is_idempotent(tmp_path: Path) -> None:
    a = _history_of(tmp_path / "a", [10.0] * 3)
    b = _history_of(tmp_path / "b", [7.0] * 2, fps=[FP_B] * 2)
    dest = History(tmp_path / "dest", create=True)
    assert dest.merge_from(a) == 3
    assert dest.merge_from(b) == 2
    assert dest.merge_from(a) == 0
    assert sorted({e["fingerprint"] for e in dest.entries()}) == [FP_A, FP_B]
    assert all(len(dest.records(e)) == 2 for e in dest.entries())


# --- series, segments, detection --------------------------------------------------------------------------------------


def test_fingerprint_change_opens_a_new_segment_and_is_no_change_point(tmp_path: Path) -> None:
    """Machine B is 30 % faster: two segments, and the level shift at the switch is not a change point."""
    hist = _history_of(tmp_path, [10.0] * 12 + [7.0] * 12, fps=[FP_A] * 12 + [FP_B] * 12)
    tracks = {t.key: t for t in tracks_from_history(hist)}
    lat = tracks["latency_ms_p50"]
    assert [(s.fingerprint, len(s.points)) for s in lat.segments] == [(FP_A, 12), (FP_B, 12)]
    assert detect_all(tracks.values()) == []


def test_machines_interleaved_in_time_stay_two_series(tmp_path: Path) -> None:
    """CI runners of two CPU types taking turns: one segment per machine, and machine A's 10 % step at its 8th run
    (commit 16) is found in A's series alone."""
    levels = [(10.0 * (1.10 if i >= 16 else 1.0)) if i % 2 == 0 else 7.0 for i in range(28)]
    hist = _history_of(tmp_path, levels, fps=[FP_A if i % 2 == 0 else FP_B for i in range(28)])
    lat = {t.key: t for t in tracks_from_history(hist)}["latency_ms_p50"]
    assert [(s.fingerprint, len(s.points)) for s in lat.segments] == [(FP_A, 14), (FP_B, 14)]
    assert [(a.fingerprint, a.commit, a.label) for a in detect_all([lat])] == [(FP_A, "c016", "regression")]


def test_definition_change_opens_a_new_segment(tmp_path: Path) -> None:
    hist = _history_of(tmp_path, [10.0] * 6)
    run = make_run(tmp_path / "runs", "more-rounds", latency_ms=10.0, rounds=40)  # rounds define the experiment
    hist.add(run, commit="c999", branch="main", repo=tmp_path)
    lat = {t.key: t for t in tracks_from_history(hist)}["latency_ms_p50"]
    assert [len(s.points) for s in lat.segments] == [6, 1]


def test_step_and_counted_change_are_found_at_their_commits(tmp_path: Path) -> None:
    """A 10 % slowdown from commit 12 (10 sigma at 1 % noise) and MACs 1000 -> 900 from commit 16."""
    levels = [10.0] * 12 + [11.0] * 10
    macs = [1000] * 16 + [900] * 6
    hist = _history_of(tmp_path, levels, macs=macs)
    tracks = tracks_from_history(hist)
    alerts = {a.key: a for a in detect_all(tracks)}
    assert set(alerts) == {"latency_ms_p50", "macs"}
    assert (alerts["latency_ms_p50"].commit, alerts["latency_ms_p50"].label) == ("c012", "regression")
    assert alerts["latency_ms_p50"].magnitude == pytest.approx(0.10, abs=0.02)
    assert (alerts["macs"].commit, alerts["macs"].label) == ("c016", "improvement")
    assert [a.key for a in open_regressions(tracks)] == ["latency_ms_p50"]


def test_contended_runs_are_kept_but_not_detected(tmp_path: Path) -> None:
    """Three contended runs 50 % slower in a row would be a change point if they were used."""
    levels = [10.0] * 8 + [15.0] * 3 + [10.0] * 8
    hist = _history_of(tmp_path, levels, contended={8, 9, 10})
    lat = {t.key: t for t in tracks_from_history(hist)}["latency_ms_p50"]
    assert sum(p.contended for s in lat.segments for p in s.points) == 3
    assert detect_all([lat]) == []


def test_change_at_the_end_is_suspicious_until_enough_points_follow() -> None:
    rng = random.Random(1)
    base = [100 * math.exp(rng.gauss(0, 0.01)) for _ in range(20)]
    two_after = [*base, 120.0, 121.0]
    labels = [c.label for c in detect.detect_measured(two_after, "lower")]
    assert labels == ["suspicious"]
    three_after = [*two_after, 119.0]
    assert [c.label for c in detect.detect_measured(three_after, "lower")] == ["regression"]
    assert [c.label for c in detect.detect_measured(three_after, "higher")] == ["improvement"]


def test_isolated_outliers_are_not_changes() -> None:
    rng = random.Random(2)
    ys = [100 * math.exp(rng.gauss(0, 0.01)) for _ in range(60)]
    for i in (10, 25, 40):
        ys[i] *= 3.0
    assert detect.detect_measured(ys, "lower") == []


def test_median_interval_matches_the_binomial_order_statistics() -> None:
    """n = 20: P(B <= 5) = 0.0207 <= 0.025 < P(B <= 6) = 0.0577 for B ~ Binomial(20, 1/2), so the 95 % interval
    is [x(6), x(15)] (1-based), coverage 1 - 2 x 0.0207 = 95.9 %."""
    assert median_interval(list(range(1, 21))) == (6, 15)
    assert median_interval([1.0] * 5) is None


# --- the CSV reader and bad input ---------------------------------------------------------------------------------


def test_csv_reads_series_with_contended_rows(tmp_path: Path) -> None:
    rows = ["series,commit,value,contended"]
    rng = random.Random(3)
    for i in range(30):
        v = 50 * (1.08 if i >= 15 else 1.0) * math.exp(rng.gauss(0, 0.01))
        rows.append(f"s1,c{i},{v},{'true' if i == 5 else ''}")
    path = tmp_path / "s.csv"
    path.write_text("\n".join(rows) + "\n")
    tracks = tracks_from_csv(path)
    assert len(tracks) == 1 and sum(p.contended for p in tracks[0].segments[0].points) == 1
    alerts = detect_all(tracks)
    assert [(a.commit, a.label) for a in alerts] == [("c15", "regression")]


@pytest.mark.parametrize(("setup", "argv", "needle"), [
    ("not_a_run", ["add", "{tmp}/plain"], "is not a run folder"),
    ("csv", ["detect", "--csv", "{tmp}/bad.csv"], "is not a finite number"),
    ("history", ["detect", "--branch", "nope"], "branch 'nope' has no runs"),
    ("nothing", ["list"], "is not a history folder"),
])
def test_bad_input_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str], setup: str,
                                     argv: list[str], needle: str) -> None:
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "notes.txt").write_text("hello")
    (tmp_path / "bad.csv").write_text("s,c1,1.0\ns,c2,fast\n")
    if setup == "history":
        _history_of(tmp_path, [10.0, 10.0])
    hist = tmp_path / "hist"
    before = sorted(p for p in tmp_path.rglob("*"))
    rc = main(["history", "--history", str(hist), *[a.format(tmp=tmp_path) for a in argv]])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 2
    assert len(err) == 1 and needle in err[0], err
    assert "Traceback" not in err[0]
    assert sorted(p for p in tmp_path.rglob("*")) == before  # nothing written


# --- the gate: lvm compare --baseline history:BRANCH~N ----------------------------------------------------------------


def test_gate_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    hist = _history_of(tmp_path, [10.0] * 5 + [10.0] * 2, contended={5, 6})
    same = make_run(tmp_path / "new", "same", latency_ms=10.0, seed=99)
    slow = make_run(tmp_path / "new", "slow", latency_ms=13.0, seed=98)
    busy = make_run(tmp_path / "new", "busy", latency_ms=10.0, seed=97, contended=True)
    other = make_run(tmp_path / "new", "other", latency_ms=10.0, seed=96, fingerprint=FP_B)
    common = ["--history", str(hist.root)]
    assert main(["compare", str(same), "--baseline", "history:main~3", *common]) == 0
    assert main(["compare", str(slow), "--baseline", "history:main~3", *common]) == 1
    assert main(["compare", "history:main~3", str(slow), *common]) == 1  # the spec as BASE works too
    assert main(["compare", str(other), "--baseline", "history:main", *common]) == 3
    # the counted values (params, MACs) are decided, the timed ones not: only inconclusive when nothing measured is
    assert main(["compare", str(busy), "--baseline", "history:main", "--metric", "latency", *common]) == 4
    capsys.readouterr()
    assert main(["compare", str(same), "--baseline", "history:dev", *common]) == 2
    assert "branch 'dev' has no runs" in capsys.readouterr().err


def test_gate_fails_a_run_missing_cases_of_the_history_unless_allowed(tmp_path: Path,
                                                                       capsys: pytest.CaptureFixture[str]) -> None:
    hist = _history_of(tmp_path, [10.0] * 3)
    partial = make_run(tmp_path / "new", "partial", latency_ms=10.0, seed=99)
    killed = next(partial.glob("records/*.jsonl"))
    lines = killed.read_text().splitlines()
    killed.write_text("".join(line + "\n" for line in lines if '"metric":"latency"' not in line.replace(" ", "")))
    common = ["compare", str(partial), "--baseline", "history:main~3", "--history", str(hist.root)]
    capsys.readouterr()
    assert main(common) == 1
    assert "1 case(s) of history:main~3's newest run are missing" in capsys.readouterr().err
    assert main([*common, "--allow-missing"]) == 0


def test_gate_pools_the_last_n_uncontended_runs(tmp_path: Path) -> None:
    from lvmharness.history.gate import pooled_baseline

    hist = _history_of(tmp_path, [10.0] * 6, contended={5})
    new = hist.records(hist.entries()[0])
    base, missing = pooled_baseline(hist, "main", 3, new)
    lat = next(r for r in base if r["metric"] == "latency")
    assert missing == []
    assert lat["provenance"]["pooled_runs"] == ["r004", "r003", "r002"]  # r005 contended: skipped
    assert len(lat["values"]["samples"]) == 3 * 20


# --- exports ---------------------------------------------------------------------------------------------------------

# Bencher's published JSON Schema of the Bencher Metric Format, https://bencher.dev/bmf.json (draft-07).
BMF_SCHEMA = {
    "$schema": "http://json-schema.org/draft-07/schema",
    "type": "object",
    "patternProperties": {".+": {"type": "object", "patternProperties": {".+": {
        "type": "object",
        "properties": {"value": {"type": "number"}, "lower_value": {"type": "number"},
                       "upper_value": {"type": "number"}},
        "required": ["value"]}}}},
}


def test_bmf_validates_against_bencher_schema(tmp_path: Path) -> None:
    hist = _history_of(tmp_path, [10.0] * 3)
    doc = bmf(tracks_from_history(hist))
    jsonschema.Draft7Validator(BMF_SCHEMA).validate(doc)
    lat = doc["latency[tiny-cpu-fp32-b1-32]"]["latency_ms_p50"]
    assert lat["lower_value"] <= lat["value"] <= lat["upper_value"]
    assert doc["flops[tiny-cpu-fp32-b1-32]"]["macs"] == {"value": 1000.0}


@pytest.mark.skipif(shutil.which("node") is None, reason="node is needed to read the file as JavaScript does")
def test_github_action_benchmark_files_parse_as_its_benchmark_results(tmp_path: Path) -> None:
    """github-action-benchmark reads custom*IsBetter with JSON.parse and keeps name, value, unit, range, extra
    (src/extract.ts, extractCustomBenchmarkResult; types from its BenchmarkResult interface: name, unit string,
    value number, range and extra optional strings). node checks exactly that on our files."""
    hist = _history_of(tmp_path, [10.0] * 3)
    tracks = tracks_from_history(hist)
    for better, want in (("lower", {"latency[tiny-cpu-fp32-b1-32] latency_ms_p50"}), ("higher", set())):
        path = tmp_path / f"{better}.json"
        path.write_text(json.dumps(gab(tracks, better)))
        script = (
            "const fs=require('fs');const j=JSON.parse(fs.readFileSync(process.argv[1],'utf8'));"
            "if(!Array.isArray(j))throw new Error('not an array');"
            "const r=j.map(({name,value,unit,range,extra})=>({name,value,unit,range,extra}));"
            "for(const b of r){if(typeof b.name!=='string'||typeof b.value!=='number'||typeof b.unit!=='string'"
            "||(b.range!==undefined&&typeof b.range!=='string')||(b.extra!==undefined&&typeof b.extra!=='string'))"
            "throw new Error('bad entry '+JSON.stringify(b));}console.log(JSON.stringify(r.map(b=>b.name)));")
        out = subprocess.run(["node", "-e", script, str(path)], capture_output=True, text=True, check=True)
        names = set(json.loads(out.stdout))
        assert want <= names
        if better == "lower":
            assert "flops[tiny-cpu-fp32-b1-32] macs" in names  # counted, lower is better
        else:
            assert not any("latency_ms" in n for n in names)


def test_csv_export_round_trips_through_detect(tmp_path: Path) -> None:
    hist = _history_of(tmp_path, [10.0] * 10 + [11.5] * 6, contended={3})
    path = tmp_path / "h.csv"
    path.write_text(csv_text(tracks_from_history(hist)))
    alerts = [a for a in detect_all(tracks_from_csv(path)) if "latency_ms_p50" in a.series]
    assert [(a.commit, a.label) for a in alerts] == [("c010", "regression")]
    # only the latency record of run 3 carries the contended flag (the counted case has no timing to disturb)
    assert sum(line.endswith(",true") for line in path.read_text().splitlines()) == 1


def test_issue_targets_on_a_small_seeded_bank() -> None:
    """The targets, on a few series (tools/history_bank.py runs the full bank): no alarm on 20 unchanged series of
    60 commits at 1-5 % CV, and a 5 % step at 1 % CV (5 sigma) found by the third commit after it (delay <= 3) in
    each of 10 series, in the right direction, at the right commit."""
    rng = random.Random(11)
    for i in range(20):
        cv = (0.01, 0.02, 0.05)[i % 3]
        ys = [100 * math.exp(rng.gauss(0, cv)) for _ in range(60)]
        assert [c for c in detect.detect_measured(ys, "lower") if c.label != "suspicious"] == []
    for i in range(10):
        up = i % 2 == 0
        ys = [100 * math.exp(rng.gauss(0, 0.01)) * ((1.05 if up else 0.95) if k >= 40 else 1) for k in range(44)]
        found = detect.detect_measured(ys, "lower")
        assert [(c.index, c.label) for c in found] == [(40, "regression" if up else "improvement")]
