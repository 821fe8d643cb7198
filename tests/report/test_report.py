"""lvm report: busy-machine records are shown as such; bad input is one clear line and nothing half-written."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from lvmharness.commands.main import main
from lvmharness.store.records import make_record
from lvmharness.store.run_folder import RunStore


def _run(tmp_path: Path, *, busy: bool) -> Path:
    store = RunStore(tmp_path / "runs")
    for batch, p50 in ((1, 2.0), (4, 6.0)):
        values = {"latency_ms_p50": p50, "samples": [p50] * 5, "contended": busy and batch == 4}
        if busy and batch == 4:
            values.update(cpu_share=0.31, other_load_cores=1.8)
        store.add(make_record(run_id=store.run_id, metric="latency", model="m", alias="m", family="vit",
                              device="cpu", dtype="fp32", batch_size=batch, img_size=32, values=values))
    return store.run_dir


def test_contended_cases_are_listed_in_page_csv_and_terminal(tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path, busy=True)
    assert main(["report", str(run), "-o", str(tmp_path / "rep")]) == 0
    out = capsys.readouterr().out
    assert "contended: 1 record(s)" in out and "latency[m-cpu-fp32-b4-32]" in out
    page = (tmp_path / "rep" / "report.html").read_text()
    assert "Measured on a busy machine (1 of 2 records)" in page and "latency[m-cpu-fp32-b4-32]" in page
    assert "1.8" in page  # other_load_cores shown
    with open(tmp_path / "rep" / "results.csv", newline="") as fh:
        rows = {r["batch_size"]: r for r in csv.DictReader(fh)}
    assert rows["4"]["contended"] == "True" and rows["1"]["contended"] == "False"


def test_an_idle_run_has_no_busy_section(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path, busy=False)
    assert main(["report", str(run), "-o", str(tmp_path / "rep")]) == 0
    assert "contended" not in capsys.readouterr().out
    assert "busy machine" not in (tmp_path / "rep" / "report.html").read_text()


def test_output_that_is_a_file_is_exit_2_and_the_file_is_untouched(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path, busy=False)
    target = tmp_path / "notes.txt"
    target.write_text("keep me")
    with pytest.raises(SystemExit) as exc:
        main(["report", str(run), "-o", str(target)])
    assert exc.value.code == 2
    assert f"argument -o/--output: {target} is a file; give a folder" in capsys.readouterr().err
    assert target.read_text() == "keep me"
    # The library call says the same without argparse.
    from lvmharness.report.render import build_report

    with pytest.raises(ValueError, match="is a file"):
        build_report([run], target)
    assert target.read_text() == "keep me"


def test_a_corrupt_env_json_is_named(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = _run(tmp_path, busy=False)
    (run / "env.json").write_text("{torn")
    assert main(["report", str(run), "-o", str(tmp_path / "rep")]) == 2
    assert f"{run / 'env.json'}: not a readable env file" in capsys.readouterr().err
    assert not (tmp_path / "rep").exists()  # nothing written before the inputs were read
