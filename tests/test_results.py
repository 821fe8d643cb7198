"""The result store: atomic rewrites, records for every outcome, the JSON schema."""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, BinaryIO

import jsonschema
import pytest
import torch

from lvmharness.devices import DTYPES
from lvmharness.execution import DTYPE_MODES
from lvmharness.results import (
    DTYPE_NAMES,
    STORAGE_DTYPE_NAMES,
    ResultsFileError,
    RunStore,
    atomic_write,
    atomic_write_json,
    case_id,
    load_records,
    make_record,
    new_run_id,
    schema,
)


def test_dtype_names_are_one_vocabulary() -> None:
    # The CLI's choices, the schema's enum and the torch tables must name the same modes, in the same order.
    assert tuple(DTYPE_MODES) == DTYPE_NAMES
    assert tuple(DTYPES) == STORAGE_DTYPE_NAMES
    assert schema()["properties"]["dtype"]["enum"] == list(DTYPE_NAMES)
    assert all(DTYPE_MODES[name] == (DTYPES[name], None) for name in STORAGE_DTYPE_NAMES)


FP = "0123456789abcdef"  # a fixed fingerprint: these tests are about the store, not the machine


def identity(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        metric="latency", model="resnet50", alias="resnet", family="resnet", device="cpu", dtype="fp32",
        batch_size=8, img_size=224,
    )
    base.update(over)
    return base


def validate(records: list[dict[str, Any]]) -> None:
    validator = jsonschema.Draft202012Validator(schema())
    for rec in records:
        validator.validate(rec)


def test_case_id_matches_pytest_ids() -> None:
    assert case_id("latency", "vit", "cuda:0", "bf16", 8, 224) == "latency[vit-cuda0-bf16-b8-224]"
    assert case_id("latency", "vit", "cpu", "fp32", 1, 224, {"channels_last": True, "compile": False}) == (
        "latency[vit-cpu-fp32-b1-224-channels_last]"
    )


def test_a_case_that_raises_leaves_the_earlier_records_and_an_error_record(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.case(**identity(batch_size=1)) as rec:
        rec.values["latency_ms_p50"] = 3.5

    def failing_case() -> None:
        with store.case(**identity(batch_size=2)) as rec:
            rec.values["latency_ms_p50"] = 1.0
            raise RuntimeError("kernel exploded")

    with pytest.raises(RuntimeError, match="kernel exploded"):
        failing_case()
    records = load_records(store.run_dir)
    assert [r["status"] for r in records] == ["ok", "error"]
    assert records[0]["values"] == {"latency_ms_p50": 3.5}
    assert "kernel exploded" in records[1]["error"] and "traceback" in records[1]["provenance"]
    validate(records)


def test_out_of_memory_is_a_result_not_a_crash(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with store.case(**identity()):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
    with store.case(**identity(batch_size=1)) as rec:
        rec.values["latency_ms_p50"] = 2.0
    records = load_records(store.results_path)
    assert [r["status"] for r in records] == ["oom", "ok"]
    assert "Tried to allocate" in records[0]["error"]
    validate(records)


def test_skip_is_recorded_as_skipped(tmp_path: Path) -> None:
    store = RunStore(tmp_path)
    with pytest.raises(pytest.skip.Exception), store.case(**identity(device="cuda")):
        pytest.skip("needs cuda")
    (rec,) = load_records(store.run_dir)
    assert rec["status"] == "skipped" and "needs cuda" in rec["error"]
    validate([rec])


def test_non_finite_values_are_stored_as_null(tmp_path: Path) -> None:
    store = RunStore(tmp_path, fingerprint=FP)
    with store.case(**identity()) as rec:
        rec.values.update(throughput_img_s=float("inf"), latency_ms_p50=float("nan"), samples=[1.0, 2.0])
    store.close()
    for text in (store.results_path.read_text(), store.records_path.read_text()):
        assert "Infinity" not in text and "NaN" not in text
    (loaded,) = json.loads(store.results_path.read_text())
    assert loaded["values"]["throughput_img_s"] is None
    validate([loaded])


def test_atomic_write_keeps_the_old_file_when_the_write_fails_halfway(tmp_path: Path) -> None:
    path = tmp_path / "results.json"
    atomic_write_json(path, [{"a": 1}])

    def half_then_fail(fh: BinaryIO) -> None:
        fh.write(b'[{"a": 2}, {"b"')  # the write has started: bytes are on their way to disk
        fh.flush()
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(path, half_then_fail)
    assert json.loads(path.read_text()) == [{"a": 1}]
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]  # no temp file left behind


def test_atomic_write_writes_a_temp_file_fsyncs_it_renames_it_then_fsyncs_the_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Durability is an order of events, observed through the calls themselves (no timing, no power cut):
    # data fsync'd before the rename makes it visible, and the folder fsync'd after it makes the rename durable.
    path = tmp_path / "results.json"
    path.write_text("old\n")
    events: list[tuple[str, str]] = []
    real_fsync, real_replace = os.fsync, os.replace

    def fsync(fd: int) -> None:
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        real_fsync(fd)

    def replace(src: Any, dst: Any) -> None:
        events.append(("replace", f"{src} -> {dst}"))
        real_replace(src, dst)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)

    def write(fh: BinaryIO) -> None:
        fh.write(b"new\n")
        fh.flush()
        assert path.read_text() == "old\n"  # the target is untouched while the new content is written

    atomic_write(path, write)
    assert path.read_text() == "new\n"
    (tmp,) = {e[1] for e in events if e[0] == "fsync" and e[1] not in (str(tmp_path), str(path))}
    assert Path(tmp).parent == tmp_path and Path(tmp).name != path.name
    assert events == [("fsync", tmp), ("replace", f"{tmp} -> {path}"), ("fsync", str(tmp_path))]


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_files_get_the_mode_the_umask_gives(tmp_path: Path, umask: int) -> None:
    # open(..., "w") creates 0666 & ~umask; mkstemp alone would give 0600 whatever the umask.
    old = os.umask(umask)
    try:
        store = RunStore(tmp_path, "run", fingerprint=FP)
        with store.case(**identity()):
            pass
        store.write_env({"torch": "x"})
        store.close()
        atomic_write(tmp_path / "ckpt.pt", lambda fh: fh.write(b"x"))
    finally:
        os.umask(old)
    expected = 0o666 & ~umask
    for p in (store.results_path, store.env_path, store.records_path, store.own_env_path, tmp_path / "ckpt.pt"):
        assert stat.S_IMODE(p.stat().st_mode) == expected, (p, oct(p.stat().st_mode))


def test_reopening_a_run_appends(tmp_path: Path) -> None:
    first = RunStore(tmp_path, "run-1")
    with first.case(**identity()):
        pass
    second = RunStore(tmp_path, "run-1")
    with second.case(**identity(batch_size=2)):
        pass
    assert len(load_records(tmp_path / "run-1")) == 2


def test_schema_rejects_bad_records() -> None:
    good = make_record(run_id="r", **identity())
    validate([good])
    validator = jsonschema.Draft202012Validator(schema())
    for bad in (
        {**good, "status": "crashed"},
        {**good, "status": "error", "error": None},
        {**good, "values": {"latency_ms_p50": "fast"}},
        {k: v for k, v in good.items() if k != "metric"},
    ):
        assert list(validator.iter_errors(bad)), bad
    with pytest.raises(ValueError, match="status"):
        make_record(run_id="r", status="crashed", **identity())


@pytest.mark.parametrize(
    ("content", "message"),
    [("{not json", "not valid JSON"), ('{"a": 1}', "JSON list"), ('[{"schema": 9}]', "schema 9")],
)
def test_malformed_results_files_are_clear_errors(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "results.json"
    path.write_text(content)
    with pytest.raises(ResultsFileError, match=message):
        load_records(path)
    with pytest.raises(ResultsFileError, match="no such results file"):
        load_records(tmp_path / "missing")


def test_run_ids_sort_by_start_order_and_are_unique() -> None:
    # 50 ids in a tight loop start within a few milliseconds: the string order must still be
    # the creation order (the random suffix must never decide it) and none may repeat.
    ids = [new_run_id() for _ in range(50)]
    assert len(set(ids)) == 50
    assert sorted(ids) == ids
    assert all(re.fullmatch(r"\d{8}T\d{6}\.\d{3}Z-[0-9a-f]{6}", i) for i in ids)
    t = _dt.datetime(2026, 11, 30, 7, 36, 31, 42_000, tzinfo=_dt.UTC)
    assert new_run_id(t).startswith("20261130T073631.042Z-")
    assert new_run_id(t + _dt.timedelta(milliseconds=1)) > new_run_id(t).split("-")[0] + "-ffffff"


def test_run_id_mismatch_is_refused(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "mine")
    with pytest.raises(ValueError, match="does not belong"):
        store.add(make_record(run_id="other", **identity()))
