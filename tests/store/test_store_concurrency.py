"""Many writers, one run folder: no finished record is lost, whatever the interleaving or the kill point."""

from __future__ import annotations

import json
import locale
import math
import os
import random
import re
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lvmharness.core import fileio
from lvmharness.store import run_folder
from lvmharness.store.loading import (
    RECORDS_DIR,
    ResultsFileError,
    load_env,
    load_records,
    merge_envs,
    merged_env,
    merged_records,
)
from lvmharness.store.run_folder import RunStore
from lvmharness.store.run_ids import validate_run_id
from tests.helpers.records import record

ROOT = Path(__file__).resolve().parents[2]
FP = "0123456789abcdef"

# A writer process: waits for the start signal (so all writers really overlap), then adds `count` records (or
# forever with count -1), printing each case id only after add() returned, then rebuilds the views on close.
WRITER = r"""
import sys, time
from pathlib import Path
from lvmharness.store.records import make_record
from lvmharness.store.run_folder import RunStore
root, run_id, tag = sys.argv[1:4]
count, payload, go = int(sys.argv[4]), int(sys.argv[5]), Path(sys.argv[6])
while not go.exists():
    time.sleep(0.001)
store = RunStore(root, run_id, writer=tag, fingerprint="0123456789abcdef")
i = 0
while count < 0 or i < count:
    rec = make_record(run_id=run_id, metric="latency", model="m", alias="m", family="vit", device="cpu",
                      dtype="fp32", batch_size=i + 1, img_size=32, case=f"{tag}-{i}",
                      values={"samples": [float(j) for j in range(payload)]})
    store.add(rec)
    print(rec["case_id"], flush=True)
    i += 1
store.close()
"""


def start_writer(root: Path, run_id: str, tag: str, count: int, payload: int, go: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, str(root), run_id, tag, str(count), str(payload), str(go)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )


def test_four_writers_at_once_lose_nothing(tmp_path: Path) -> None:
    go = tmp_path / "go"
    writers = [start_writer(tmp_path, "shared", f"w{k}", 30, 200, go) for k in range(4)]
    time.sleep(0.5)  # every writer has imported and is spinning on the start signal
    go.touch()
    printed: set[str] = set()
    for w in writers:
        out, err = w.communicate(timeout=120)
        assert w.returncode == 0, err
        printed |= set(out.split())
    expected = {f"w{k}-{i}" for k in range(4) for i in range(30)}
    assert printed == expected
    records = load_records(tmp_path / "shared")
    assert len(records) == 120 and {r["case_id"] for r in records} == expected
    # The view that the last writer to close left behind holds everything, read raw (no rebuild by a reader):
    # four writers rebuilt it concurrently, lock-free.
    raw = json.loads((tmp_path / "shared" / "results.json").read_text())
    assert {r["case_id"] for r in raw} == expected
    assert len(list((tmp_path / "shared" / RECORDS_DIR).glob("*.jsonl"))) == 4


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_of_a_writer_loses_none_of_its_finished_records(tmp_path: Path, seed: int) -> None:
    # Records of ~40 kB make a write take long enough that the kill often lands inside one.
    rng = random.Random(seed)
    go = tmp_path / "go"
    go.touch()
    other = start_writer(tmp_path, "shared", "steady", 20, 50, go)
    victim = start_writer(tmp_path, "shared", "victim", -1, 4000, go)
    assert victim.stdout is not None
    finished: list[str] = []
    stop_after = rng.randint(3, 30)
    while len(finished) < stop_after:
        line = victim.stdout.readline()
        assert line, victim.stderr.read() if victim.stderr else ""
        finished.append(line.strip())
    time.sleep(rng.uniform(0, 0.02))
    victim.send_signal(signal.SIGKILL)
    rest, _ = victim.communicate(timeout=30)
    finished += rest.split()  # ids printed between our last read and the kill were finished too
    assert victim.returncode == -signal.SIGKILL
    assert other.wait(timeout=60) == 0
    ids = {r["case_id"] for r in load_records(tmp_path / "shared")}
    assert set(finished) <= ids, f"seed {seed}: lost {sorted(set(finished) - ids)}"
    assert {f"steady-{i}" for i in range(20)} <= ids
    # Whatever the kill left (at most one unfinished line) is not a record: every record read back is whole.
    victim_ids = sorted((i for i in ids if i.startswith("victim-")), key=lambda s: int(s.split("-")[1]))
    assert victim_ids == [f"victim-{i}" for i in range(len(victim_ids))]
    assert len(victim_ids) - len(finished) in (0, 1)  # the one whose fsync finished but whose print did not


def test_an_unfinished_last_line_is_skipped_and_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "r", fingerprint=FP)
    store.add(record("r", "a"))
    with store.records_path.open("ab") as fh:
        fh.write(b'{"schema": 1, "case_id": "b", "val')  # a kill in the middle of a write
    assert [r["case_id"] for r in load_records(store.run_dir)] == ["a"]
    with store.records_path.open("ab") as fh:
        fh.write(b"\n")  # now the torn text is a whole line in the middle: corruption, not an unfinished write
    with pytest.raises(ResultsFileError, match=rf"{store.records_path.name}:2: not a valid JSON record"):
        load_records(store.run_dir)


def test_a_failed_append_is_cut_back_so_later_records_stay_readable(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = RunStore(tmp_path, "r", fingerprint=FP)
    store.add(record("r", "a"))
    real_write = os.write

    def short_then_fail(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_fail)
    with pytest.raises(OSError, match="No space"):
        store.add(record("r", "b"))
    monkeypatch.undo()
    store.add(record("r", "c"))
    assert [r["case_id"] for r in load_records(store.run_dir)] == ["a", "c"]


def test_every_record_carries_the_fingerprint_and_a_legacy_folder_is_imported_once(tmp_path: Path) -> None:
    run = tmp_path / "old"
    run.mkdir()
    (run / "results.json").write_text(json.dumps([record("old", "legacy-1")]))
    first, second = RunStore(tmp_path, "old", fingerprint=FP), RunStore(tmp_path, "old", fingerprint=FP)
    first.add(record("old", "new-1"))
    second.add(record("old", "new-2"))
    records = load_records(run)
    assert sorted(r["case_id"] for r in records) == ["legacy-1", "new-1", "new-2"]
    assert [r.get("fingerprint") for r in records if r["case_id"].startswith("new")] == [FP, FP]
    assert sorted(p.name for p in (run / RECORDS_DIR).iterdir()) == sorted(
        ["legacy.jsonl", f"{first.writer}.jsonl", f"{second.writer}.jsonl"]
    )


def test_env_view_merges_writers_without_dropping_what_differs(tmp_path: Path) -> None:
    a, b = RunStore(tmp_path, "r", fingerprint=FP), RunStore(tmp_path, "r", fingerprint=FP)
    a.write_env({"created_utc": "2026-11-30T10:00:00+00:00", "torch": "2.14.1", "threads": 1,
                 "peak_flops_per_s": {"cpu/fp32": 1.0}})
    b.write_env({"created_utc": "2026-11-30T10:00:01+00:00", "torch": "2.14.1", "threads": 2,
                 "peak_flops_per_s": {"cpu/bf16": 3.0}})
    env = load_env(tmp_path / "r")
    assert env is not None
    assert env["torch"] == "2.14.1" and env["threads"] == 1  # the earliest writer's value...
    assert env["writer_differences"] == {b.writer: {"threads": 2}}  # ...and the other's, kept
    assert env["peak_flops_per_s"] == {"cpu/fp32": 1.0, "cpu/bf16": 3.0}  # compatible dicts are united
    assert env["writers"] == [a.writer, b.writer]
    assert json.loads((tmp_path / "r" / "env.json").read_text()) == env
    two = merge_envs({"x": {"fingerprint": "1" * 16, "machine": {"cpu": "A"}},
                      "y": {"fingerprint": "2" * 16, "machine": {"cpu": "B"}}})
    assert two["machines"] == {"1" * 16: {"cpu": "A"}, "2" * 16: {"cpu": "B"}}


@pytest.mark.parametrize("bad", ["../x", "..", ".", "a/b", "/abs", "", "a..b", "run id", "x" * 201, "ü"])
def test_bad_run_ids_are_refused_with_what_is_valid(tmp_path: Path, bad: str) -> None:
    with pytest.raises(ValueError, match="letters, digits"):
        validate_run_id(bad)
    with pytest.raises(ValueError, match="letters, digits"):
        RunStore(tmp_path / "out", bad)
    assert not (tmp_path / "out").exists() and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("good", ["nightly-2026-11-30", "20261130T073631.042Z-f575a4", "a.b_c-d", "x" * 200])
def test_good_run_ids_pass_unchanged(good: str) -> None:
    assert validate_run_id(good) == good


def test_writer_facts_go_into_every_record_and_the_record_wins(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "r", fingerprint=FP, provenance={"xdist_worker": "gw1", "torch_threads": 1})
    store.add(record("r", "a"))
    store.add(record("r", "b", provenance={"torch_threads": 4}))
    a, b = load_records(store.run_dir)
    assert a["provenance"] == {"xdist_worker": "gw1", "torch_threads": 1}
    assert b["provenance"] == {"xdist_worker": "gw1", "torch_threads": 4}


def test_add_returns_only_after_its_line_is_fsynced(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # "Finished" means durable: observed through the calls (no power cut needed), the last thing done to the
    # writer's file before add() returns is an fsync that follows the write of the whole line.
    store = RunStore(tmp_path, "r", fingerprint=FP)
    events: list[tuple[str, str, int]] = []
    real_write, real_fsync = os.write, os.fsync

    def write(fd: int, data: Any) -> int:
        events.append(("write", os.readlink(f"/proc/self/fd/{fd}"), len(data)))
        return real_write(fd, data)

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}"), 0))
        real_fsync(fd)

    monkeypatch.setattr(os, "write", write)
    monkeypatch.setattr(os, "fsync", fsync)
    for case in ("a", "b"):
        events.clear()
        store.add(record("r", case))
        mine = [e for e in events if e[1] == str(store.records_path)]
        line = len(store.records_path.read_bytes().splitlines(keepends=True)[-1])
        assert [e[0] for e in mine] == ["write", "fsync"] and mine[0][2] == line, mine


def fsyncs(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The paths fsync'd from now on, in order."""
    events: list[str] = []
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        events.append(os.readlink(f"/proc/self/fd/{fd}"))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", fsync)
    return events


def test_a_new_writer_file_is_made_durable_with_its_folders(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A new file is only durable once the directory entries leading to it are: its first append fsyncs the file,
    # then records/, then the run folder (which may have been created just now). Later appends fsync the file only.
    store = RunStore(tmp_path, "r", fingerprint=FP)
    events = fsyncs(monkeypatch)
    store.add(record("r", "a"))
    run = tmp_path / "r"
    assert events == [str(store.records_path), str(run / RECORDS_DIR), str(run)]
    events.clear()
    store.add(record("r", "b"))
    assert events == [str(store.records_path)]


def test_add_returns_the_record_as_stored_and_remembers_it(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "r", fingerprint=FP)
    first = store.add(record("r", "a"))
    second = store.add(record("r", "b", values={"latency_ms_p50": 1.5}))
    assert store.written == [first, second]
    assert [json.loads(line) for line in store.records_path.read_text().splitlines()] == [first, second]
    assert second["fingerprint"] == FP and second["values"] == {"latency_ms_p50": 1.5}


def test_the_legacy_check_runs_once_per_writer_not_once_per_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It lists records/ (O(writers)): per record, a long run's appends would grow costlier as writers accumulate.
    calls: list[Path] = []
    real = run_folder._import_legacy

    def counting(run_dir: Path) -> None:
        calls.append(run_dir)
        real(run_dir)

    monkeypatch.setattr(run_folder, "_import_legacy", counting)
    store = RunStore(tmp_path, "r", fingerprint=FP)
    for case in ("a", "b", "c"):
        store.add(record("r", case))
    assert calls == [store.run_dir]


def test_the_env_file_of_a_writer_names_its_writer_and_run(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "r", fingerprint=FP)
    store.write_env({"torch": "2.14.1"})
    assert json.loads(store.own_env_path.read_text()) == {"torch": "2.14.1", "writer": store.writer, "run_id": "r"}


def test_reopening_a_closed_run_appends_without_duplicating_its_records(tmp_path: Path) -> None:
    # A closed run has results.json next to records/: that view is not a legacy file to import again.
    first = RunStore(tmp_path, "r", fingerprint=FP)
    first.add(record("r", "a"))
    first.add(record("r", "b"))
    first.close()
    second = RunStore(tmp_path, "r", fingerprint=FP)
    second.add(record("r", "c"))
    assert sorted(r["case_id"] for r in load_records(tmp_path / "r")) == ["a", "b", "c"]
    assert sorted(p.name for p in (tmp_path / "r" / RECORDS_DIR).iterdir()) == sorted(
        [f"{first.writer}.jsonl", f"{second.writer}.jsonl"])


def test_a_legacy_import_keeps_every_record_and_the_umask_mode(tmp_path: Path) -> None:
    run = tmp_path / "old"
    run.mkdir()
    old = [record("old", "legacy-1"), record("old", "legacy-2", status="error", error="boom")]
    (run / "results.json").write_text(json.dumps(old))
    umask = os.umask(0o022)
    try:
        RunStore(tmp_path, "old", fingerprint=FP).add(record("old", "new-1"))
    finally:
        os.umask(umask)
    legacy = run / RECORDS_DIR / "legacy.jsonl"
    assert [json.loads(line) for line in legacy.read_text().splitlines()] == old
    assert stat.S_IMODE(legacy.stat().st_mode) == 0o644  # 0o666 less the umask 0o022, as a plain open gives
    assert [r["case_id"] for r in load_records(run)] == ["legacy-1", "legacy-2", "new-1"]


def test_two_writers_importing_one_legacy_folder_at_once_import_it_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Both saw no records/*.jsonl and staged a copy; the other one linked its copy first. Ours finds the name taken,
    # which is fine: the records are there once. The staged copy is a hidden .tmp file in records/ (a hard link
    # cannot cross filesystems) and is gone afterwards.
    run = tmp_path / "old"
    run.mkdir()
    (run / "results.json").write_text(json.dumps([record("old", "legacy-1")]))
    staged: list[Path] = []
    real_link = os.link

    def link_after_the_other_writer(src: Any, dst: Any, **kwargs: Any) -> None:
        staged.append(Path(src))
        Path(dst).write_bytes(Path(src).read_bytes())  # the other writer's identical import, linked first
        real_link(src, dst, **kwargs)

    monkeypatch.setattr(os, "link", link_after_the_other_writer)
    store = RunStore(tmp_path, "old", fingerprint=FP)
    store.add(record("old", "new-1"))
    monkeypatch.undo()
    assert [r["case_id"] for r in load_records(run)] == ["legacy-1", "new-1"]
    (src,) = staged
    assert src.parent == run / RECORDS_DIR and re.fullmatch(r"\.legacy\.\w+\.tmp", src.name), src
    assert sorted(p.name for p in (run / RECORDS_DIR).iterdir()) == sorted(["legacy.jsonl", store.records_path.name])


def test_a_legacy_file_with_nan_never_becomes_non_standard_json(tmp_path: Path) -> None:
    # Python's json reads NaN, other tools do not: a legacy file holding NaN is imported with null there, as the
    # store writes every non-finite number, and no records file may hold NaN.
    run = tmp_path / "old"
    run.mkdir()
    (run / "results.json").write_text(json.dumps([record("old", "nan-1", values={"latency_ms_p50": math.nan})]))
    assert "NaN" in (run / "results.json").read_text()
    RunStore(tmp_path, "old", fingerprint=FP).add(record("old", "new-1"))
    by_case = {r["case_id"]: r for r in load_records(run)}
    assert set(by_case) == {"nan-1", "new-1"} and by_case["nan-1"]["values"]["latency_ms_p50"] is None

    def refuse(name: str) -> Any:
        raise AssertionError(f"non-standard JSON constant {name}")

    for path in (run / RECORDS_DIR).glob("*.jsonl"):
        for line in path.read_text().splitlines():
            json.loads(line, parse_constant=refuse)


def test_blank_lines_are_skipped_and_a_non_object_line_is_an_error_naming_it(tmp_path: Path) -> None:
    path = tmp_path / "r" / RECORDS_DIR / "w.jsonl"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps(record("r", "a")) + "\n\n" + json.dumps(record("r", "b")) + "\n")
    assert [r["case_id"] for r in load_records(path)] == ["a", "b"]
    path.write_text(json.dumps(record("r", "a")) + "\n[1, 2]\n")
    with pytest.raises(ResultsFileError, match=rf"^{re.escape(str(path))}:2: expected a JSON object per line$"):
        load_records(tmp_path / "r")


def test_a_record_that_breaks_the_schema_is_an_error_naming_its_file(tmp_path: Path) -> None:
    bad = {**record("r", "a"), "status": "crashed"}
    writer_file = tmp_path / "r" / RECORDS_DIR / "w.jsonl"
    writer_file.parent.mkdir(parents=True)
    writer_file.write_text(json.dumps(bad) + "\n")
    for where in (writer_file, tmp_path / "r"):
        with pytest.raises(ResultsFileError, match=rf"^{re.escape(str(writer_file))}: record 0 \(a\): field 'status'"):
            load_records(where)
    legacy = tmp_path / "old" / "results.json"
    legacy.parent.mkdir()
    legacy.write_text(json.dumps([bad]))
    with pytest.raises(ResultsFileError, match=rf"^{re.escape(str(legacy))}: record 0 \(a\): field 'status'"):
        load_records(legacy)


def test_a_results_file_must_be_a_list_of_objects(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    path.write_text("[1, 2]")
    with pytest.raises(ResultsFileError, match="expected a JSON list of record objects"):
        load_records(path)


def test_merged_records_follow_their_creation_time_not_the_writer_names(tmp_path: Path) -> None:
    # Writer a's record is the later one; a record without a time (an old writer's) counts as the earliest.
    records_dir = tmp_path / "r" / RECORDS_DIR
    records_dir.mkdir(parents=True)
    late = {**record("r", "late"), "created_utc": "2026-11-30T10:00:05+00:00"}
    early = {**record("r", "early"), "created_utc": "2026-11-30T10:00:00+00:00"}
    undated = {k: v for k, v in record("r", "undated").items() if k != "created_utc"}
    (records_dir / "a.jsonl").write_text(json.dumps(late) + "\n")
    (records_dir / "b.jsonl").write_text(json.dumps(early) + "\n" + json.dumps(undated) + "\n")
    assert [r["case_id"] for r in load_records(tmp_path / "r")] == ["undated", "early", "late"]


def test_views_are_written_once_each_and_always_whole(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # Every view a reader can see is the whole merged list (or env); an up-to-date view is never rewritten, so
    # reading a finished run writes nothing (it may be a read-only copy, and rewriting is wasted fsyncs).
    store = RunStore(tmp_path, "r", fingerprint=FP)
    store.write_env({"torch": "2.14.1"})
    store.add(record("r", "a"))
    written: list[tuple[str, Any]] = []
    real = fileio.atomic_write

    def spy(path: Path, write: Any) -> None:
        real(path, write)
        written.append((path.name, json.loads(path.read_text())))

    monkeypatch.setattr(fileio, "atomic_write", spy)
    store.close()
    assert [(name, [r["case_id"] for r in view]) for name, view in written] == [("results.json", ["a"])]
    written.clear()
    assert [r["case_id"] for r in load_records(store.run_dir)] == ["a"]
    assert [r["case_id"] for r in store.records] == ["a"]
    env = load_env(store.run_dir)
    assert env is not None and env["torch"] == "2.14.1"
    assert written == []


def test_views_can_be_computed_without_writing(tmp_path: Path) -> None:
    run = tmp_path / "r"
    RunStore(tmp_path, "r", writer="w", fingerprint=FP).add(record("r", "a"))
    (run / "env").mkdir()
    (run / "env" / "w.json").write_text(json.dumps({"torch": "2.14.1"}))
    assert [r["case_id"] for r in merged_records(run)] == ["a"]
    assert merged_env(run) == {"torch": "2.14.1", "writers": ["w"]}
    assert not (run / "results.json").exists() and not (run / "env.json").exists()


def test_reading_a_run_never_writes_even_when_its_views_are_stale(tmp_path: Path) -> None:
    # A writer killed before its close leaves the views stale: readers merge the writers' files themselves and
    # leave every file as it was (the folder may be a read-only copy; rebuilding is the writers' job).
    store = RunStore(tmp_path, "r", writer="w", fingerprint=FP)
    store.write_env({"torch": "2.14.1"})
    store.add(record("r", "a"))
    store.close()
    store.add(record("r", "b"))  # after the close: results.json still lists only "a"
    (store.run_dir / "env" / "late.json").write_text(json.dumps({"torch": "2.14.1", "gpu": "x"}))
    before = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in store.run_dir.rglob("*") if p.is_file()}
    assert [r["case_id"] for r in load_records(store.run_dir)] == ["a", "b"]
    assert [r["case_id"] for r in load_records(store.results_path)] == ["a", "b"]
    env = load_env(store.run_dir)
    assert env is not None and env["gpu"] == "x"
    after = {p: (p.read_bytes(), p.stat().st_mtime_ns) for p in store.run_dir.rglob("*") if p.is_file()}
    assert after == before
    assert [r["case_id"] for r in json.loads(store.results_path.read_text())] == ["a"]


def test_the_env_of_a_results_file_is_its_folders_env(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "r", fingerprint=FP)
    store.write_env({"torch": "2.14.1"})
    store.add(record("r", "a"))
    store.close()
    env = load_env(store.run_dir)
    assert env is not None and env["torch"] == "2.14.1"
    assert load_env(store.results_path) == env


@pytest.mark.parametrize(("content", "message"), [("{", "not a readable env file"), ("[1]", "expected a JSON object")])
def test_a_broken_env_file_is_an_error_naming_it(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "r" / "env" / "w.json"
    path.parent.mkdir(parents=True)
    path.write_text(content)
    with pytest.raises(ResultsFileError, match=rf"^{re.escape(str(path))}: {message}"):
        load_env(tmp_path / "r")


def test_merge_envs_earliest_first_compatible_united_contradictions_kept() -> None:
    # Writer "b" started first (its name sorts last: order must come from the time). By hand:
    # - torch agrees; gpu only in a: added as is; peak dicts contradict on cpu/fp32: a's goes to the differences;
    # - cuda is a dict in b and null in a, threads a number in b and a dict in a: neither is a dict extension;
    # - one machine (same fingerprint twice): no "machines" table; "writer" is per writer, never merged.
    machine = {"cpu": "EPYC"}
    envs: dict[str, dict[str, Any]] = {
        "a": {"writer": "a", "created_utc": "2026-11-30T10:00:05+00:00", "torch": "2.14.1", "gpu": "H100",
              "peak": {"cpu/fp32": 2.0}, "cuda": None, "threads": {"intra": 4}, "fingerprint": FP, "machine": machine},
        "b": {"writer": "b", "created_utc": "2026-11-30T10:00:00+00:00", "torch": "2.14.1",
              "peak": {"cpu/fp32": 1.0, "cpu/bf16": 3.0}, "cuda": {"version": "12.4"}, "threads": 4,
              "fingerprint": FP, "machine": machine},
    }
    assert merge_envs(envs) == {
        "created_utc": "2026-11-30T10:00:00+00:00", "torch": "2.14.1", "peak": {"cpu/fp32": 1.0, "cpu/bf16": 3.0},
        "cuda": {"version": "12.4"}, "threads": 4, "fingerprint": FP, "machine": machine, "gpu": "H100",
        "writers": ["b", "a"],
        "writer_differences": {"a": {"peak": {"cpu/fp32": 2.0}, "cuda": None, "threads": {"intra": 4}}},
    }
    # An env without a time (an older writer's) counts as the earliest.
    undated = merge_envs({"z": {"torch": "1.0"}, "a": {"created_utc": "2026-11-30T10:00:00+00:00", "torch": "2.0"}})
    assert undated["writers"] == ["z", "a"] and undated["torch"] == "1.0"
    assert undated["writer_differences"] == {"a": {"torch": "2.0"}}


@pytest.fixture
def ascii_locale() -> Any:
    """The C locale's ASCII as the default text encoding (as under a non-UTF-8 locale) for the test's duration."""
    old = locale.setlocale(locale.LC_CTYPE)
    locale.setlocale(locale.LC_CTYPE, "C")
    try:
        # Under Python's UTF-8 mode (PYTHONUTF8=1, or a C locale at start-up) the default stays UTF-8 whatever the
        # locale: the test would then show nothing.
        if locale.getpreferredencoding(False).lower().replace("-", "") == "utf8":
            pytest.skip("the default text encoding stays UTF-8 here (Python's UTF-8 mode): no other locale to test")
        yield
    finally:
        locale.setlocale(locale.LC_CTYPE, old)


def test_run_files_are_utf8_whatever_the_locale(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ascii_locale: None
) -> None:
    # CPU names carry non-ASCII marks ("Intel(R)" is often written with the sign itself). The store writes JSON
    # escapes (pure ASCII), but a run folder written by an older version or another tool may hold raw UTF-8: every
    # file is read as UTF-8, so a reader under another locale reads the same text.
    cpu = "Intel\u00ae Xeon\u00ae Platinum"
    store = RunStore(tmp_path, "r", fingerprint=FP)
    store.write_env({"cpu": cpu})
    store.add(record("r", "a", provenance={"cpu": cpu}))
    store.close()
    monkeypatch.setattr(fileio, "atomic_write", lambda *a: pytest.fail("a file was written by a reader"))
    env = load_env(store.run_dir)
    assert env is not None and env["cpu"] == cpu
    assert [r["provenance"]["cpu"] for r in load_records(store.run_dir)] == [cpu]
    old = tmp_path / "old"
    old.mkdir()
    (old / "results.json").write_text(json.dumps([record("old", "b", provenance={"cpu": cpu})], ensure_ascii=False),
                                      encoding="utf-8")
    (old / "env.json").write_text(json.dumps({"cpu": cpu}, ensure_ascii=False), encoding="utf-8")
    assert [r["provenance"]["cpu"] for r in load_records(old)] == [cpu]
    assert load_env(old) == {"cpu": cpu}
