"""Many writers, one run folder: no finished record is lost, whatever the interleaving or the kill point."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from lvmharness.results import (
    RECORDS_DIR,
    ResultsFileError,
    RunStore,
    load_env,
    load_records,
    make_record,
    merge_envs,
    validate_run_id,
)

ROOT = Path(__file__).resolve().parents[1]
FP = "0123456789abcdef"

# A writer process: waits for the start signal (so all writers really overlap), then adds `count` records (or
# forever with count -1), printing each case id only after add() returned, then rebuilds the views on close.
WRITER = r"""
import sys, time
from pathlib import Path
from lvmharness.results import RunStore, make_record
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


def rec(run_id: str, case: str, **over: Any) -> dict[str, Any]:
    return make_record(run_id=run_id, metric="latency", model="m", alias="m", family="vit", device="cpu",
                       dtype="fp32", batch_size=1, img_size=32, case=case, **over)


def test_an_unfinished_last_line_is_skipped_and_a_bad_middle_line_is_an_error(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "r", fingerprint=FP)
    store.add(rec("r", "a"))
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
    store.add(rec("r", "a"))
    real_write = os.write

    def short_then_fail(fd: int, data: Any) -> int:
        real_write(fd, bytes(data[:10]))
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "write", short_then_fail)
    with pytest.raises(OSError, match="No space"):
        store.add(rec("r", "b"))
    monkeypatch.undo()
    store.add(rec("r", "c"))
    assert [r["case_id"] for r in load_records(store.run_dir)] == ["a", "c"]


def test_every_record_carries_the_fingerprint_and_a_legacy_folder_is_imported_once(tmp_path: Path) -> None:
    run = tmp_path / "old"
    run.mkdir()
    (run / "results.json").write_text(json.dumps([rec("old", "legacy-1")]))
    first, second = RunStore(tmp_path, "old", fingerprint=FP), RunStore(tmp_path, "old", fingerprint=FP)
    first.add(rec("old", "new-1"))
    second.add(rec("old", "new-2"))
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
    store.add(rec("r", "a"))
    store.add(rec("r", "b", provenance={"torch_threads": 4}))
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
        store.add(rec("r", case))
        mine = [e for e in events if e[1] == str(store.records_path)]
        line = len(store.records_path.read_bytes().splitlines(keepends=True)[-1])
        assert [e[0] for e in mine] == ["write", "fsync"] and mine[0][2] == line, mine
