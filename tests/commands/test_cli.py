from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from lvmharness.commands.main import main
from lvmharness.store.loading import load_records


def test_models_lists_aliases(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["models", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    by_alias = {r["alias"]: r for r in rows}
    assert by_alias["swin"]["timm_name"] == "swin_base_patch4_window7_224"
    # The built-in aliases (+ the accuracy ladder's ConvNeXt); a test module's register_model ones are "registered".
    builtin = [r for r in rows if r["note"] != "registered"]
    assert {r["family"] for r in builtin} == {"vit", "deit", "swin", "resnet", "convnext"}


def test_latency_json_and_record(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["latency", "smoke_vit", "--device", "cpu", "--batch-size", "2", "--budget-s", "0.05",
                 "--json", "--out", str(tmp_path)])
    assert code == 0
    out = json.loads(capsys.readouterr().out)
    assert out["batch_size"] == 2 and out["img_size"] == 32 and out["latency_ms_p50"] > 0
    (run,) = list(tmp_path.iterdir())
    (rec,) = load_records(run)
    assert rec["values"]["latency_ms_p50"] == out["latency_ms_p50"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["latency", "vitt"], "unknown model 'vitt'"),
        (["latency", "vit", "--img-size", "225", "--device", "cpu"], "Valid sizes near it: "),
        (["latency", "smoke_vit", "--device", "tpu"], "valid devices are"),
    ],
)
def test_bad_input_is_exit_2_with_the_reason(argv: list[str], message: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(argv) == 2
    assert message in capsys.readouterr().err


def test_python_dash_m_works() -> None:
    proc = subprocess.run([sys.executable, "-m", "lvmharness", "models"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and "vit_base_patch16_224" in proc.stdout


def test_flops_json_has_the_documented_keys(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "smoke_vit", "--batch-size", "2", "--json", "--scaling", "32,64,96"]) == 0
    out = json.loads(capsys.readouterr().out)
    required = {"model", "img_size", "batch_size", "params", "macs", "flops", "macs_fwd_bwd", "counter",
                "uncounted_ops"}
    assert required <= set(out)
    assert out["flops"] == 2 * out["macs"] and out["batch_size"] == 2 and out["uncounted_ops"] == {}
    assert out["macs_by_module"]["blocks"] > 0
    assert 1.0 < out["scaling"]["exponent_vs_pixels"] < 2.0


def test_flops_table_labels_units(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["flops", "smoke_resnet", "--verify"]) == 0
    text = capsys.readouterr().out
    assert "MACs = multiply-accumulates" in text and "FLOPs = 2 x MACs" in text
    assert "second counter" in text and "layer1" in text


def test_graph_writes_a_valid_file(tmp_path: Path) -> None:
    from lvmharness.formats.graph_format import validate_graph
    from lvmharness.measure.graph import check_invariants

    out = tmp_path / "g.json"
    assert main(["graph", "smoke_swin", "--img-size", "64", "-o", str(out)]) == 0
    doc = json.loads(out.read_text())
    validate_graph(doc)
    check_invariants(doc)
    assert doc["img_size"] == 64


def test_vit_huge_is_counted_without_allocating_its_weights() -> None:
    # The child reports its own peak RSS (VmHWM) on stderr after the command ran.
    code = (
        "import sys; from lvmharness.commands.main import main; "
        "rc = main(['flops', 'vit_huge_patch14_224', '--json']); "
        "sys.stderr.write([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0]); sys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["params"] == 630_764_800 and out["device"] == "meta"
    peak_kib = int(proc.stderr.strip().splitlines()[-1].split()[1])
    # fp32 weights alone would be 2.5 GB; the whole process (torch import included) stays far below.
    assert peak_kib < 2 * 1024 * 1024


def _modules_after(argv: list[str], cwd: Path | None = None) -> tuple[int, set[str], str]:
    """Run ``lvm ARGV`` in a fresh interpreter and return (exit code, the modules it imported, stderr)."""
    code = (
        "import sys, json\nfrom lvmharness.commands.main import main\n"
        f"try:\n    rc = main({argv!r})\nexcept SystemExit as e:\n    rc = e.code\n"
        "print(json.dumps(sorted(sys.modules)), file=sys.stderr)\nsys.exit(rc)"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=cwd)
    lines = proc.stderr.strip().splitlines()
    return proc.returncode, set(json.loads(lines[-1])), "\n".join(lines[:-1])


@pytest.mark.parametrize("argv", [["--help"], ["compare", "--help"], ["report", "--help"], ["baseline", "--help"]])
def test_help_imports_neither_torch_nor_timm(argv: list[str]) -> None:
    rc, mods, err = _modules_after(argv)
    assert rc == 0, err
    assert not {"torch", "timm", "torchvision", "numpy"} & mods


def test_compare_and_report_of_a_run_import_neither_torch_nor_timm(tmp_path: Path) -> None:
    from lvmharness.store.records import make_record
    from lvmharness.store.run_folder import RunStore

    store = RunStore(tmp_path)
    for batch, p50 in ((1, 2.0), (4, 6.0)):
        store.add(make_record(run_id=store.run_id, metric="latency", model="m", alias="m", family="vit",
                              device="cpu", dtype="fp32", batch_size=batch, img_size=32,
                              values={"latency_ms_p50": p50, "samples": [p50] * 5}))
    rc, mods, err = _modules_after(["compare", str(store.run_dir), str(store.run_dir)])
    assert rc == 0, err
    assert not {"torch", "timm"} & mods
    rc, mods, err = _modules_after(["report", str(store.run_dir), "-o", str(tmp_path / "rep")])
    assert rc == 0, err
    assert not {"torch", "timm"} & mods
    assert (tmp_path / "rep" / "report.html").is_file()


def test_every_registered_command_has_the_two_functions() -> None:
    """One line of ``COMMANDS`` is the whole registration: the module it names provides the rest."""
    from lvmharness.commands.main import COMMANDS, load

    assert len({c.name for c in COMMANDS}) == len(COMMANDS)
    for command in COMMANDS:
        module = load(command)
        assert callable(module.add_arguments) and callable(module.run), command.module


def test_each_subcommand_help_shows_its_own_options(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["compare", "--help"])
    assert exc.value.code == 0
    assert "--latency-threshold" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = capsys.readouterr().out
    assert all(name in listing for name in ("models", "latency", "compare", "report", "train", "viz"))


B = "between 1 and 1,048,576"  # every --batch-size: parsing.MAX_BATCH_SIZE = 2^20


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["latency", "smoke_vit", "--batch-size", "0"], f"--batch-size: must be an integer {B}, got 0"),
        (["latency", "smoke_vit", "--batch-size=-3"], f"--batch-size: must be an integer {B}, got -3"),
        (["latency", "smoke_vit", "--img-size", "0"], "--img-size: must be an integer between 1 and 8,192"),
        (["latency", "smoke_vit", "--budget-s", "nan"], "--budget-s: 'nan' must be a finite number of seconds >= 0"),
        (["flops", "smoke_vit", "--scaling", "0,64"], "--scaling: 0 must be a positive integer"),
        (["flops", "smoke_vit", "--scaling", "32,x"], "--scaling: 'x' is not an integer"),
        (["flops", "smoke_vit", "--batch-size", "0"], f"--batch-size: must be an integer {B}"),
        (["graph", "smoke_vit", "--img-size", "0", "-o", "g.json"], "--img-size: must be an integer between 1"),
        (["memory", "smoke_vit", "--batch-size", "0"], f"--batch-size: must be an integer {B}, got 0"),
        (["memory", "smoke_vit", "--img-size", "x"], "--img-size: expected an integer, got 'x'"),
        (["sweep", "--shards", "0"], "--shards: must be an integer between 1 and 1,001, got 0"),
        (["sweep", "--shards", "2", "--gpus-per-shard", "-1"],
         "--gpus-per-shard: must be an integer between 0 and 64, got -1"),
        (["sweep", "--shards", "2", "--time", "0"], "--time: must be an integer between 1 and 525,600, got 0"),
    ],
)
def test_bad_numbers_are_one_argparse_error(argv: list[str], message: str,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_outputs_that_cannot_be_written_are_refused_before_any_work(tmp_path: Path,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    afile = tmp_path / "afile"
    afile.write_text("keep")
    for argv, message in (
        (["graph", "smoke_vit", "-o", str(tmp_path)], f"{tmp_path} is a folder; give a file name"),
        (["graph", "smoke_vit", "-o", str(afile / "g.json")], f"{afile} is a file, so"),
        (["latency", "smoke_vit", "--out", str(afile)], f"{afile} is a file; give a folder"),
        (["baseline", str(tmp_path), "-o", str(tmp_path)], "is a folder"),
    ):
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err
    assert afile.read_text() == "keep" and sorted(p.name for p in tmp_path.iterdir()) == ["afile"]


def test_a_batch_that_cannot_fit_is_exit_2_and_writes_nothing(tmp_path: Path,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    # The largest batch and size the command line accepts: 2^20 images of 3 x 4096 x 4096 fp32 = 2^20 x 3 x 2^24 x 4
    # bytes = 192 TiB of input alone: the allocator refuses it.
    argv = ["latency", "smoke_resnet", "--device", "cpu", "--batch-size", "1048576", "--img-size", "4096", "--out",
            str(tmp_path / "r")]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "out of memory at --batch-size 1048576, 4096px on cpu" in err and "Traceback" not in err
    assert not (tmp_path / "r").exists()
