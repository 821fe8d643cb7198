"""The result store: records for every outcome, run ids, writers, the JSON schema."""

from __future__ import annotations

import argparse
import calendar
import datetime as _dt
import json
import os
import re
import socket
import stat
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import torch

from lvmharness.core.fileio import atomic_write
from lvmharness.store import run_ids
from lvmharness.store.loading import ResultsFileError, load_records
from lvmharness.store.record_schema import record_schema
from lvmharness.store.records import case_id, make_record, record_identity
from lvmharness.store.run_folder import RunStore, writer_name
from lvmharness.store.run_ids import new_run_id, run_id_arg, validate_run_id

FP = "0123456789abcdef"  # a fixed fingerprint: these tests are about the store, not the machine


def identity(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = dict(
        metric="latency", model="resnet50", alias="resnet", family="resnet", device="cpu", dtype="fp32",
        batch_size=8, img_size=224,
    )
    base.update(over)
    return base


def validate(records: list[dict[str, Any]]) -> None:
    validator = jsonschema.Draft202012Validator(record_schema())
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
    validator = jsonschema.Draft202012Validator(record_schema())
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


def test_a_clock_behind_the_last_id_gives_the_next_millisecond(monkeypatch: pytest.MonkeyPatch) -> None:
    # The last id of this process was stamped 2999-01-01 00:00:00.000 (a clock that stepped back since, or many ids
    # in one millisecond): the next id is exactly one millisecond later, so ids keep the creation order without
    # jumping ahead of the clock more than needed. The millisecond count comes from calendar.timegm, not our code.
    last_ms = calendar.timegm((2999, 1, 1, 0, 0, 0)) * 1000
    monkeypatch.setattr(run_ids, "_last_run_ms", last_ms)
    assert new_run_id().startswith("29990101T000000.001Z-")
    assert new_run_id().startswith("29990101T000000.002Z-")


def test_a_bad_run_id_message_says_what_is_valid_with_examples() -> None:
    with pytest.raises(ValueError) as info:
        validate_run_id("a/b")
    assert str(info.value) == (
        "run id 'a/b' is not valid: use 1-200 letters, digits, '.', '_' or '-', without '..' "
        "(it names one folder inside the results folder), e.g. nightly-2026-11-30 or 20261130T073631.042Z-f575a4"
    )


def test_run_id_arg_gives_argparse_the_value_or_the_message(capsys: pytest.CaptureFixture[str]) -> None:
    parser = argparse.ArgumentParser(prog="lvm")
    parser.add_argument("--run-id", type=run_id_arg)
    assert parser.parse_args(["--run-id", "nightly-2026-11-30"]).run_id == "nightly-2026-11-30"
    with pytest.raises(SystemExit):
        parser.parse_args(["--run-id", "../x"])
    err = capsys.readouterr().err
    assert "argument --run-id: run id '../x' is not valid: use 1-200 letters, digits" in err


def test_case_id_names_valued_options_as_key_equals_value() -> None:
    # Sorted by key; True is the bare key, False/None are left out, anything else is key=value.
    options = {"mode": "max-autotune", "compile": True, "amp": False, "tag": None, "warmup": 3}
    assert case_id("latency", "vit", "cpu", "fp32", None, None, options) == (
        "latency[vit-cpu-fp32-compile-mode=max-autotune-warmup=3]"
    )


def test_a_case_can_skip_itself_with_a_reason(tmp_path: Path) -> None:
    store = RunStore(tmp_path, fingerprint=FP)
    with store.case(**identity(device="cuda")) as rec:
        rec.skip("no CUDA device")
    (loaded,) = load_records(store.run_dir)
    assert (loaded["status"], loaded["error"]) == ("skipped", "no CUDA device")


def test_a_record_carries_every_identity_field_in_the_schema_order() -> None:
    before = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    rec = make_record(run_id="r", metric="latency", model="timm/vit_base", alias="vit", family="vit",
                      device="cuda:0", dtype="bf16", batch_size=8, img_size=224, phase="train",
                      options={"mode": "max", "compile": True}, values={"latency_ms_p50": 2.0})
    assert list(rec) == ["schema", "run_id", "case_id", "metric", "model", "alias", "family", "device", "dtype",
                         "batch_size", "img_size", "phase", "options", "status", "error", "values", "provenance",
                         "created_utc"]
    assert rec["case_id"] == "latency[vit-cuda0-bf16-b8-224-compile-mode=max]"  # the alias names the case
    assert (rec["model"], rec["batch_size"], rec["img_size"], rec["phase"], rec["options"]) == (
        "timm/vit_base", 8, 224, "train", {"mode": "max", "compile": True})
    assert before <= _dt.datetime.fromisoformat(rec["created_utc"]) <= _dt.datetime.now(_dt.UTC)
    assert record_identity(metric="m", model="x", alias="x", family="f", device="cpu", dtype="fp32",
                           batch_size=None, img_size=None)["phase"] == "inference"


def test_an_unknown_phase_is_refused_naming_the_valid_ones() -> None:
    with pytest.raises(ValueError, match=r"phase 'eval' is not one of \('inference', 'train', 'finetune'\)"):
        make_record(run_id="r", phase="eval", **identity())


def test_writer_names_are_host_label_pid_and_a_random_tag(monkeypatch: pytest.MonkeyPatch) -> None:
    # Only letters, digits, '.' and '-' survive (anything else becomes '_'), the host cut to 64 characters and
    # the label to 32: the name is a file name on every filesystem.
    monkeypatch.setattr(socket, "gethostname", lambda: "Node 7/GPU.example-1")
    pid = os.getpid()
    name = writer_name("gw 0/A")
    assert re.fullmatch(rf"Node_7_GPU\.example-1-gw_0_A-{pid}-[0-9a-f]{{6}}", name), name
    assert writer_name("gw 0/A") != name  # the random tag tells two stores of one process apart
    assert re.fullmatch(rf"Node_7_GPU\.example-1-{pid}-[0-9a-f]{{6}}", writer_name()), writer_name()
    monkeypatch.setattr(socket, "gethostname", lambda: "h" * 70)
    assert re.fullmatch(rf"h{{64}}-{'L' * 32}-{pid}-[0-9a-f]{{6}}", writer_name("L" * 40))
    monkeypatch.setattr(socket, "gethostname", lambda: "")
    assert re.fullmatch(rf"host-{pid}-[0-9a-f]{{6}}", writer_name())


def test_a_store_names_its_file_after_its_writer_label(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "r", writer="gw3", fingerprint=FP)
    assert re.fullmatch(rf".+-gw3-{os.getpid()}-[0-9a-f]{{6}}", store.writer), store.writer
    assert store.records_path == tmp_path / "r" / "records" / f"{store.writer}.jsonl"


def test_a_foreign_record_is_refused_naming_both_runs(tmp_path: Path) -> None:
    store = RunStore(tmp_path, "mine", fingerprint=FP)
    with pytest.raises(ValueError, match="record run_id 'other' does not belong to run 'mine'"):
        store.add(make_record(run_id="other", **identity()))


def test_the_results_view_is_indented_one_field_per_line(tmp_path: Path) -> None:
    # results.json is read and diffed by people: a list of objects, indent 1, each field on its own line.
    store = RunStore(tmp_path, "r", fingerprint=FP)
    store.add(make_record(run_id="r", **identity()))
    store.close()
    assert store.results_path.read_text().splitlines()[:4] == ["[", " {", '  "schema": 1,', '  "run_id": "r",']
