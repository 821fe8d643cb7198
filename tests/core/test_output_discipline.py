"""Output paths and numbers, one discipline for every front end: nothing at an output path is replaced unless it is
a regular file, every output location is checked before any work starts, a bounded search says it hit its bound,
the regression gate fails a run that lacks cases, a torn record line is named, and the page answers JSON for every
failure. One section per kind of failure; each test fails on code without the discipline."""

from __future__ import annotations

import json
import os
import shutil
import signal
import stat
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from lvmharness.commands.main import main
from lvmharness.core.fileio import atomic_write_json
from lvmharness.core.outputs import OutputPathError, check_output_file, check_output_folder
from lvmharness.store.records import make_record, record_identity
from lvmharness.store.run_folder import RunStore

ROOT = Path(__file__).resolve().parents[2]


def tree(folder: Path) -> list[tuple[str, str]]:
    """Everything under ``folder`` (name, kind): what "nothing written" compares."""
    out = []
    for p in sorted(folder.rglob("*")):
        st = os.lstat(p)
        kind = ("link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode)
                else "file" if stat.S_ISREG(st.st_mode) else "special")
        out.append((str(p.relative_to(folder)), kind))
    return out


@contextmanager
def made_read_only(folder: Path) -> Iterator[Path]:
    """``folder`` refusing every write. As root, mode bits stop nothing, so it is a read-only bind mount of itself
    (skipped where mounting is not allowed); as another user, mode 0555 is enough."""
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    ok = subprocess.run(["mount", "--bind", str(folder), str(folder)], capture_output=True).returncode == 0
    if ok and subprocess.run(["mount", "-o", "remount,ro,bind", str(folder)], capture_output=True).returncode != 0:
        subprocess.run(["umount", str(folder)], capture_output=True)
        ok = False
    if not ok:
        pytest.skip("root without permission to make a read-only bind mount")
    try:
        with pytest.raises(OSError):
            (folder / "probe").write_text("x")  # the helper's own check: the folder really refuses writes
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@pytest.fixture
def read_only(tmp_path: Path) -> Iterator[Path]:
    ro = tmp_path / "ro"
    ro.mkdir()
    (ro / "kept.txt").write_text("kept")
    with made_read_only(ro):
        yield ro


def flops_record(run_id: str, model: str) -> dict[str, object]:
    return make_record(run_id=run_id, values={"macs": 10, "params": 3}, **record_identity(
        metric="flops", model=model, alias=model, family="vit", device="cpu", dtype="fp32", batch_size=1,
        img_size=32))


def exit_code(argv: list[str]) -> int:
    """``lvm`` in-process: argparse errors are SystemExit(2); anything that escapes is a traceback (test fails)."""
    try:
        return main(argv)
    except SystemExit as exc:
        return int(exc.code or 0)


# --- 1. nothing but a regular file is ever replaced; links are followed on purpose -------------------------------


def test_a_fifo_or_a_device_as_output_file_is_refused_and_left_as_it_is(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    fifo = tmp_path / "pipe.json"
    os.mkfifo(fifo)
    targets = [(fifo, stat.S_ISFIFO, "is a FIFO (named pipe), not a regular file")]
    if os.geteuid() == 0:  # a private copy of /dev/null (character device 1:3), never the system's own
        null = tmp_path / "null"
        os.mknod(null, stat.S_IFCHR | 0o666, os.makedev(1, 3))
        targets.append((null, stat.S_ISCHR, "is a character device, not a regular file"))
    run = tmp_path / "run"
    with RunStore(run.parent, run.name, fingerprint="0123456789abcdef") as store:
        store.add(flops_record(store.run_id, "m"))
    for target, is_kind, message in targets:
        for argv in (["graph", "smoke_vit", "-o", str(target)], ["baseline", str(run), "-o", str(target)]):
            assert exit_code(argv) == 2
            err = capsys.readouterr().err
            assert message in err and "Traceback" not in err and len(err.strip().splitlines()[-1]) < 300
            assert is_kind(os.lstat(target).st_mode)  # still what it was
        # The library's writer refuses it too, for callers that did not check first.
        with pytest.raises(OutputPathError, match="writes regular files only"):
            atomic_write_json(target, {"a": 1})
        assert is_kind(os.lstat(target).st_mode)


def test_a_symlink_as_output_file_is_followed_and_kept(tmp_path: Path) -> None:
    real = tmp_path / "store" / "graph.json"
    real.parent.mkdir()
    real.write_text("old")
    link = tmp_path / "latest.json"
    link.symlink_to(real)
    assert exit_code(["graph", "smoke_vit", "-o", str(link)]) == 0
    assert link.is_symlink() and os.readlink(link) == str(real)  # the link is kept ...
    assert json.loads(real.read_text())["alias"] == "smoke_vit"  # ... and the file it names holds the graph
    # A dangling link: the file it names is created.
    dangling = tmp_path / "next.json"
    dangling.symlink_to(tmp_path / "store" / "new.json")
    assert exit_code(["graph", "smoke_vit", "-o", str(dangling)]) == 0
    assert dangling.is_symlink() and (tmp_path / "store" / "new.json").is_file()


def test_dot_dot_creates_no_stray_folder(tmp_path: Path) -> None:
    assert exit_code(["graph", "smoke_vit", "-o", str(tmp_path / "x" / ".." / "y.json")]) == 0
    assert tree(tmp_path) == [("y.json", "file")]


# --- 2. every output location checked before any work -----------------------------------------------------------


def test_unwritable_or_impossible_outputs_are_one_line_before_any_work(
        tmp_path: Path, read_only: Path, capsys: pytest.CaptureFixture[str],
        monkeypatch: pytest.MonkeyPatch) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep")
    run = tmp_path / "run"
    with RunStore(run.parent, run.name, fingerprint="0123456789abcdef") as store:
        store.add(flops_record(store.run_id, "m"))
    # Work started would be a measurement: make any attempt fail loudly instead of taking seconds.
    import lvmharness.measure.latency as latency
    import lvmharness.measure.layers.run as layers

    def no_work(*args: object, **kwargs: object) -> None:
        raise AssertionError("a measurement started before the output was checked")

    monkeypatch.setattr(latency, "forward_latency", no_work)
    monkeypatch.setattr(layers, "measure_from_spec", no_work)
    before = tree(tmp_path)
    cases = [
        (["latency", "smoke_vit", "--out", str(read_only / "runs")], "not writable"),
        (["latency", "smoke_vit", "--out", str(afile / "runs")], f"{afile} is a file"),
        (["latency", "smoke_vit", "--out", ""], "empty path"),
        (["layers", "smoke_vit", "-o", str(read_only)], "not writable"),
        (["layers", "smoke_vit", "-o", str(afile / "g")], f"{afile} is a file"),
        (["graph", "smoke_vit", "-o", str(read_only / "g.json")], "not writable"),
        (["graph", "smoke_vit", "-o", ""], "empty path"),
        (["baseline", str(run), "-o", str(read_only / "b.json")], "not writable"),
        (["baseline", str(run), "-o", str(afile / "b.json")], f"{afile} is a file"),
        (["merge", str(run), "-o", str(read_only / "merged")], "not writable"),
        (["merge", str(run), "-o", str(afile / "merged")], f"{afile} is a file"),
        (["report", str(run), "-o", str(read_only / "rep")], "not writable"),
        (["report", str(run), "-o", ""], "empty path"),
        (["sweep", "--executor", "local", "--shards", "1", "--out", str(read_only), "--", "benches/"],
         "not writable"),
    ]
    for argv, message in cases:
        assert exit_code(argv) == 2, argv
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (argv, err)
    assert tree(tmp_path) == before and afile.read_text() == "keep"


def test_the_checks_themselves(tmp_path: Path, read_only: Path) -> None:
    afile = tmp_path / "f"
    afile.write_text("x")
    assert check_output_file(str(tmp_path / "new" / "deeper" / "a.json")) == tmp_path / "new" / "deeper" / "a.json"
    assert check_output_folder(str(tmp_path / "new" / "deeper")) == tmp_path / "new" / "deeper"
    assert check_output_file(str(afile)) == afile  # an existing regular file may be replaced
    before = tree(tmp_path)
    for bad, message in [("", "empty path"), ("  ", "empty path"), ("a\0b", "NUL"),
                         (str(read_only / "x.json"), "not writable"), (str(afile / "x.json"), "is a file, so")]:
        with pytest.raises(OutputPathError, match=message):
            check_output_file(bad)
    for bad, message in [("", "empty path"), (str(afile), "is a file; give a folder"),
                         (str(read_only), "not writable"), (str(read_only / "sub" / "deeper"), "not writable")]:
        with pytest.raises(OutputPathError, match=message):
            check_output_folder(bad)
    assert tree(tmp_path) == before  # checking wrote nothing (the writability probe removes its file)


PROBE = """
import json, sys
import pytest
rc = pytest.main(sys.argv[1:])
print("LVM_PROBE " + json.dumps({"rc": int(rc)}))
"""


def pytest_probe(folder: Path, *args: str) -> tuple[int, str]:
    proc = subprocess.run([sys.executable, "-c", PROBE, *args], cwd=folder, capture_output=True, text=True,
                          timeout=300)
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("LVM_PROBE ")), None)
    assert line is not None, proc.stdout[-2000:] + proc.stderr[-2000:]
    return int(json.loads(line.removeprefix("LVM_PROBE "))["rc"]), proc.stdout + proc.stderr


def test_pytest_outputs_are_checked_while_parsing(tmp_path: Path, read_only: Path) -> None:
    (tmp_path / "test_plain.py").write_text("def test_one():\n    assert True\n")
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for args, message in [
        (["--lvm-out", str(afile)], f"argument --lvm-out: {afile} is a file; give a folder"),
        (["--lvm-out", str(read_only)], "argument --lvm-out: cannot write"),
        (["--lvm-out", ""], "argument --lvm-out: the output folder is an empty path"),
        (["--lvm-shard", "1/2", "--lvm-shard-plan", str(tmp_path)], f"argument --lvm-shard-plan: {tmp_path} is a "
                                                                    "folder"),
    ]:
        rc, out = pytest_probe(tmp_path, "-q", "-p", "no:cacheprovider", *args)
        assert rc == 4, out  # pytest's usage error, before anything is collected
        assert message in out and "Traceback" not in out and "INTERNALERROR" not in out
    assert afile.read_text() == "keep"


@pytest.mark.slow
def test_the_default_pytest_output_is_checked_before_the_first_bench(tmp_path: Path) -> None:
    (tmp_path / "bench_one.py").write_text(
        "def bench_one(lvm):\n    raise AssertionError('measured before the output was checked')\n")
    (tmp_path / "results").write_text("a file where the default run folder would go")
    rc, out = pytest_probe(tmp_path, "-q", "-p", "no:cacheprovider", "bench_one.py", "-o", "python_functions=bench_*",
                           "-o", "python_files=bench_*.py", "--lvm-models", "smoke_vit", "--lvm-device", "cpu")
    assert rc == 4, out
    assert "--lvm-out: " in out and "results is a file" in out and "measured before" not in out


def test_model_viz_graphs_must_be_a_writable_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from viz.__main__ import main as viz_main

    afile = tmp_path / "afile"
    afile.write_text("keep")
    for argv in (["--graphs", str(afile)], ["--graphs", str(afile), "--no-generate"], ["--graphs", ""],
                 ["--graphs", str(afile / "sub")]):
        with pytest.raises(SystemExit) as exc:
            viz_main(argv)
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "--graphs: " in err and "Traceback" not in err
    assert tree(tmp_path) == [("afile", "file")]


def test_train_refuses_an_empty_output_dir(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from lvmharness.commands.train import main as train_main

    monkeypatch.chdir(tmp_path)
    for option in ("--output_dir", "--results_dir"):
        assert train_main(["--dataset", "synthetic", option, ""]) == 2
        assert f"{option} is an empty path" in capsys.readouterr().err
    assert tree(tmp_path) == []


# --- 3. no silent wrong answer ---------------------------------------------------------------------------------


def _affine_predictor(intercept: int, per_sample: int) -> object:
    """A stand-in for the fake-tensor prediction whose peak is exactly intercept + per_sample x batch."""
    from lvmharness.core.memory_categories import CATEGORIES
    from lvmharness.measure.step import StepMemory

    def predict(cfg: object, **_: object) -> StepMemory:
        peak = intercept + per_sample * cfg.batch_size  # type: ignore[attr-defined]
        return StepMemory(peak_bytes=peak, breakdown={c: (peak if c == "activations" else 0) for c in CATEGORIES},
                          peak_phase="backward", phase_peaks={"backward": peak}, img_size=32)

    return predict


def test_the_largest_batch_search_never_answers_beyond_its_bound() -> None:
    from lvmharness.core.parsing import MAX_BATCH_SIZE
    from lvmharness.measure.batch_search import predicted_max_batch
    from lvmharness.measure.step import StepConfig

    a, b = 2_474_393, 174_131  # bytes and bytes per sample, about smoke_vit's train step (2.36 MiB + 170 KiB x B)
    predict = _affine_predictor(a, b)
    cfg = StepConfig("smoke_vit")
    # Within the bound the answer is exact: the largest B with a + b B <= budget is floor((budget - a) / b).
    for budget in (10**8, 100 * 2**30, a + b * MAX_BATCH_SIZE):
        found = predicted_max_batch(cfg, budget, predict=predict)  # type: ignore[arg-type]
        assert found["predicted_max_batch"] == (budget - a) // b and not found.get("hit_upper_bound")
    # 100 GiB: the true answer, 616,614, lies beyond the old cap of 65,536 the search used to stop at.
    assert (100 * 2**30 - a) // b == 616_614 > 65_536
    # Beyond the bound: the bound itself, flagged; never bound + 1.
    found = predicted_max_batch(cfg, 2**50, predict=predict)  # type: ignore[arg-type]
    assert found["predicted_max_batch"] == MAX_BATCH_SIZE and found["hit_upper_bound"] is True


def test_lvm_memory_says_when_the_search_hit_its_bound(capsys: pytest.CaptureFixture[str],
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    import lvmharness.measure.prediction as prediction

    monkeypatch.setattr(prediction, "predict_step", _affine_predictor(2_474_393, 174_131))
    assert main(["memory", "smoke_vit", "--budget", "1TiB"]) == 1  # a lower bound is not an answer to trust
    out = capsys.readouterr().out
    assert "largest batch for 1024.00 GiB: at least 1,048,576: the search stops at batch 1,048,576" in out
    assert main(["memory", "smoke_vit", "--budget", "1TiB", "--json"]) == 1
    doc = json.loads(capsys.readouterr().out)
    assert doc["predicted_max_batch"] == 1_048_576 and doc["budget_search"]["hit_upper_bound"] is True
    assert main(["memory", "smoke_vit", "--budget", "100GiB"]) == 0
    assert "largest batch for 100.00 GiB: 616614" in capsys.readouterr().out


def _killed_run(folder: Path, cases: list[str], torn_case: str) -> Path:
    """A run whose writer was killed with SIGKILL while appending the record of ``torn_case``: the cases before it
    finished, that record's line is cut short. A real kill of a real writer process."""
    code = f"""
import os, signal, sys
import json
from lvmharness.core.fileio import append_durably
from lvmharness.store.run_folder import RunStore
sys.path.insert(0, {str(Path(__file__).parent)!r})
from test_output_discipline import flops_record
store = RunStore({str(folder)!r}, "killed", fingerprint="0123456789abcdef")
for case in {cases!r}:
    store.add(flops_record("killed", case))
line = json.dumps(flops_record("killed", {torn_case!r}))
append_durably(store.records_path, line[: len(line) // 2].encode())
os.kill(os.getpid(), signal.SIGKILL)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == -signal.SIGKILL, proc.stderr
    return folder / "killed"


def test_a_killed_run_does_not_pass_the_gate_and_its_torn_line_is_named(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with RunStore(tmp_path, "base", fingerprint="0123456789abcdef") as store:
        for case in ("a", "b", "c"):
            store.add(flops_record("base", case))
    base = store.run_dir
    killed = _killed_run(tmp_path, ["a", "b"], "c")
    assert exit_code(["compare", str(base), str(killed)]) == 1
    captured = capsys.readouterr()
    assert "missing" in captured.out
    assert "FAIL: 1 case(s) of" in captured.err and "--allow-missing" in captured.err
    assert "skipped the last line of" in captured.err and "killed/records/" in captured.err
    assert exit_code(["compare", str(base), str(killed), "--allow-missing"]) == 0
    captured = capsys.readouterr()
    assert "OK: no regression" in captured.out and "skipped the last line" in captured.err
    # report and merge say it too.
    assert exit_code(["report", str(killed), "-o", str(tmp_path / "rep")]) == 0
    assert "lvm report: skipped the last line of" in capsys.readouterr().err
    assert exit_code(["merge", str(killed), "-o", str(tmp_path / "merged")]) == 0
    assert "lvm merge: skipped the last line of" in capsys.readouterr().err
    # A complete run says nothing of the kind.
    assert exit_code(["compare", str(base), str(base)]) == 0
    assert "skipped" not in capsys.readouterr().err


# --- 4. the page answers JSON for every failure ----------------------------------------------------------------


def _client(graphs: Path, *, generate: bool = True) -> FlaskClient:
    from viz.app import create_app

    app = create_app(graphs, generate=generate)
    app.testing = True
    return app.test_client()


def test_a_graph_file_with_a_5000_digit_integer_affects_only_itself(graphs: Path) -> None:
    good = json.loads((graphs / "smoke_vit-32-b1-fp32.json").read_text())
    text = json.dumps(good).replace('"params": 178600', '"params": ' + "9" * 5000, 1)
    assert "9" * 5000 in text
    (graphs / "huge-32-b1-fp32.json").write_text(text)
    client = _client(graphs)
    listing = client.get("/api/models")
    assert listing.status_code == 200 and listing.is_json
    body = listing.get_json()
    assert [g["name"] for g in body["graphs"]] == ["smoke_vit-32-b1-fp32"]
    (bad,) = body["unreadable"]
    assert bad["name"] == "huge-32-b1-fp32" and "number" in bad["error"]
    resp = client.get("/api/graph/huge-32-b1-fp32")
    assert resp.status_code == 422 and resp.is_json and "huge-32-b1-fp32" in resp.get_json()["error"]
    assert client.get("/api/graph/smoke_vit-32-b1-fp32").status_code == 200


def test_negative_counts_make_a_graph_file_unreadable(graphs: Path) -> None:
    doc = json.loads((graphs / "smoke_vit-32-b1-fp32.json").read_text())
    doc["root"]["params"] = -5
    (graphs / "neg-32-b1-fp32.json").write_text(json.dumps(doc))
    body = _client(graphs).get("/api/models").get_json()
    assert [u["name"] for u in body["unreadable"]] == ["neg-32-b1-fp32"]
    assert "'params' must be an integer >= 0" in body["unreadable"][0]["error"]


def test_a_saved_file_that_is_not_what_was_asked_for_is_not_served_as_it(graphs: Path) -> None:
    from lvmharness.measure.graph import build_graph

    # resnet at 40 px saved under the name of smoke_vit at 56 px (a copy, a rename, a hand edit).
    atomic_write_json(graphs / "smoke_vit-56-b1-fp32.json", build_graph("smoke_resnet", img_size=40))
    resp = _client(graphs).get("/api/graph?model=smoke_vit&img_size=56")
    assert resp.status_code == 409 and resp.is_json
    assert "holds resnet18 at 40 px" in resp.get_json()["error"]


def test_an_unwritable_graphs_folder_is_a_json_error_and_the_page_still_works(read_only: Path) -> None:
    client = _client(read_only)
    resp = client.get("/api/graph?model=smoke_vit&img_size=48")
    assert resp.status_code == 503 and resp.is_json
    assert "cannot save it in" in resp.get_json()["error"]
    assert client.get("/api/models").status_code == 200


def test_any_unexpected_failure_is_json(graphs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import viz.work as work

    def broken(*args: object) -> None:
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(work, "generate", broken)
    resp = _client(graphs).get("/api/graph?model=smoke_vit&img_size=48")
    assert resp.status_code == 500 and resp.is_json
    assert resp.get_json()["error"] == "internal error: RuntimeError: disk on fire"


def test_page_sizes_are_ascii_digits_and_no_generate_creates_nothing(graphs: Path, tmp_path: Path) -> None:
    client = _client(graphs)
    for size in ("٥٦", "5_6", "+56", " 56"):  # Arabic-Indic 56, and what int() reads besides plain digits
        resp = client.get("/api/graph", query_string={"model": "smoke_vit", "img_size": size})
        assert resp.status_code == 400 and resp.is_json, size
    assert sorted(p.name for p in graphs.iterdir()) == ["smoke_vit-32-b1-fp32.json"]
    missing = tmp_path / "nothing-here"
    body = _client(missing, generate=False).get("/api/models").get_json()
    assert body["graphs"] == [] and not missing.exists()


# --- 5. bounded work -------------------------------------------------------------------------------------------


def test_sweep_bounds_its_shards_and_needs_slurm_for_slurm(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    import submitit

    import lvmharness.runtime.sweep as sweep

    def started(*args: object, **kwargs: object) -> None:
        raise AssertionError("an executor started")

    monkeypatch.setattr(submitit, "AutoExecutor", started)
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no sbatch, no srun
    out = tmp_path / "out"
    assert exit_code(["sweep", "--shards", "1000000", "--out", str(out), "--", "benches/"]) == 2
    assert "--shards: must be an integer between 1 and 1,001, got 1000000" in capsys.readouterr().err
    monkeypatch.setattr(sweep, "_cores", lambda: 2)
    assert exit_code(["sweep", "--executor", "local", "--shards", "9", "--out", str(out), "--", "benches/"]) == 2
    assert "at most 8 (4 per core, 2 cores here)" in capsys.readouterr().err
    assert exit_code(["sweep", "--executor", "slurm", "--shards", "2", "--out", str(out), "--", "benches/"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "sbatch and srun not found on PATH" in err
    assert not out.exists()


@pytest.mark.parametrize("command", ["latency", "flops", "memory", "graph"])
def test_a_batch_beyond_64_bits_is_refused_where_it_is_parsed(command: str, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    extra = ["-o", str(tmp_path / "g.json")] if command == "graph" else []
    assert exit_code([command, "smoke_vit", "--batch-size", "99999999999999999999", *extra]) == 2
    err = capsys.readouterr().err
    assert "--batch-size: must be an integer between 1 and 1,048,576" in err and "Traceback" not in err
    assert tree(tmp_path) == []


def test_train_and_plugin_numbers_beyond_their_range(capsys: pytest.CaptureFixture[str]) -> None:
    import argparse

    from lvmharness.bench.config import add_options
    from lvmharness.commands.train import main as train_main

    assert train_main(["--dataset", "synthetic", "--seed", "99999999999999999999"]) == 2
    assert "--seed must be <= 4,294,967,295, got 99999999999999999999" in capsys.readouterr().err

    class Group:  # the pytest option group, as argparse
        def __init__(self) -> None:
            self.parser = argparse.ArgumentParser(prog="pytest")

        def addoption(self, *names: str, **kwargs: object) -> None:
            self.parser.add_argument(*names, **kwargs)  # type: ignore[arg-type]

    group = Group()
    add_options(group)
    for option in ("--lvm-batch-sizes", "--lvm-img-sizes"):
        with pytest.raises(SystemExit):
            group.parser.parse_args([option, "1,99999999999999999999"])
        assert "must be a positive integer <=" in capsys.readouterr().err


# --- 6. the smaller ones ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "message"), [
    (["memory", "smoke_vit", "--layers", "-1"], "--layers: must be an integer between 0 and 10,000, got -1"),
    (["memory", "smoke_vit", "--timeout-s", "0"], "--timeout-s: '0' must be a number of seconds > 0"),
    (["memory", "smoke_vit", "--timeout-s", "-5"], "--timeout-s: '-5' must be a finite number of seconds >= 0"),
    (["memory", "smoke_vit", "--timeout-s", "nan"], "--timeout-s: 'nan' must be a finite number of seconds >= 0"),
    (["models", "--timm", ""], "--timm '' is an empty pattern"),
])
def test_small_ones_are_one_line(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert exit_code(argv) == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_resume_naming_a_folder_says_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from lvmharness.commands.train import main as train_main

    (tmp_path / "ckpt").mkdir()
    (tmp_path / "ckpt" / "checkpoint.pt").write_bytes(b"")
    rc = train_main(["--dataset", "synthetic", "--output_dir", str(tmp_path / "o"), "--results_dir",
                     str(tmp_path / "r"), "--resume", str(tmp_path / "ckpt")])
    assert rc == 2
    err = capsys.readouterr().err
    assert f"--resume {tmp_path / 'ckpt'} is a folder; name the file in it, e.g. " \
           f"{tmp_path / 'ckpt' / 'checkpoint.pt'}" in err


def test_sigterm_while_saving_a_checkpoint_leaves_no_temporary_file(tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    import lvmharness.commands.train
    from lvmharness.commands.train import main as train_main
    from lvmharness.train.checkpoint import save_checkpoint

    target = tmp_path / "checkpoint.pt"
    target.write_bytes(b"the last complete checkpoint")

    def train_killed_while_saving(cfg: object) -> dict[str, object]:
        def save(_: object) -> None:
            # Without a handler SIGTERM would end this test process (the whole session): fail instead.
            assert signal.getsignal(signal.SIGTERM) not in (signal.SIG_DFL, None), "no SIGTERM handler"
            os.kill(os.getpid(), signal.SIGTERM)  # what Slurm's time limit or `kill` sends
            raise AssertionError("SIGTERM did not stop the run")

        import torch

        monkeypatch.setattr(torch, "save", lambda obj, fh: save(fh))
        save_checkpoint(target, {"epoch": 1})
        return {}

    monkeypatch.setattr(lvmharness.commands.train, "train", train_killed_while_saving)  # where main calls it
    previous = signal.getsignal(signal.SIGTERM)
    with pytest.raises(SystemExit) as exc:
        train_main(["--dataset", "synthetic", "--output_dir", str(tmp_path), "--results_dir", str(tmp_path)])
    assert exc.value.code == 128 + signal.SIGTERM
    assert tree(tmp_path) == [("checkpoint.pt", "file")]  # no .checkpoint.pt.*.tmp left behind
    assert target.read_bytes() == b"the last complete checkpoint"
    assert signal.getsignal(signal.SIGTERM) == previous  # the handler is the run's only


def test_the_summary_names_results_json_only_when_it_was_written(tmp_path: Path) -> None:
    from lvmharness.store.loading import load_records, results_view_current

    with RunStore(tmp_path, "r", fingerprint="0123456789abcdef") as store:
        store.add(flops_record("r", "m"))
    assert results_view_current(store.run_dir, load_records(store.run_dir))
    # The same run where results.json could not be written (the folder stopped taking writes).
    copy = tmp_path / "copy"
    shutil.copytree(store.run_dir, copy)
    (copy / "results.json").unlink()
    with made_read_only(copy):
        records = load_records(copy)  # readers still work: the view is built in memory
        assert len(records) == 1 and not results_view_current(copy, records)
