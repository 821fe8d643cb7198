"""``lvm layers``: the document printed and saved where the page finds it, the text tree, bad input, MPS."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from lvmharness.commands.main import main


def test_layers_on_mps_are_refused_in_one_line(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    # The profiler gives MPS ops only their CPU self time (encoding into a command buffer that returns before the
    # GPU runs): refused before any model is built there, as a user error (exit 2, one line).
    import lvmharness.measure.layers.run
    import lvmharness.runtime.devices

    monkeypatch.setattr(lvmharness.runtime.devices, "_mps_available", lambda: True)

    def no_build(*a: Any, **k: Any) -> None:
        raise AssertionError("a model was built on MPS before the refusal")

    monkeypatch.setattr(lvmharness.measure.layers.run, "create_model", no_build)
    assert main(["layers", "smoke_vit", "--device", "mps", "--no-roofline"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "not available on MPS" in err[0] and "--device cpu or cuda" in err[0]


# --- the CLI --------------------------------------------------------------------------------------------------------


def test_cli_json_and_page_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["layers", "smoke_vit", "--json", "--steps", "2", "--warmup", "1", "--no-roofline",
               "-o", str(tmp_path / "graphs")])
    assert rc == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["format"] == "lvmharness.layers" and doc["img_size"] == 32 and doc["device"] == "cpu"
    blocks = [n for n in doc["nodes"] if n["parent"] == "blocks"]
    assert [n["path"] for n in blocks] == ["blocks.0", "blocks.1"] and all(n["ms"] > 0 for n in blocks)
    saved = tmp_path / "graphs" / "layers" / "smoke_vit-32-b1-fp32-cpu-inference.json"
    assert json.loads(saved.read_text())["nodes"] == doc["nodes"]
    assert (tmp_path / "graphs" / "smoke_vit-32-b1-fp32.json").is_file()  # the page needs the graph too


def test_cli_text_tree(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["layers", "smoke_resnet", "--steps", "1", "--warmup", "1", "--no-roofline", "--depth", "1"]) == 0
    out = capsys.readouterr().out
    assert "layer1" in out and "layer1.0" not in out  # depth 1 only
    assert "time by layer type: " in out and "conv" in out and "direct children" in out


@pytest.mark.parametrize(("argv", "message"), [
    (["--batch-size", "0"], "must be an integer between 1 and"), (["--steps", "0"], "must be an integer between 1"),
    (["--img-size", "-3"], "must be an integer between 16"), (["--mode", "eval"], "invalid choice"),
    (["-o", "{file}"], "is a file; give a folder"),
])
def test_cli_bad_input(argv: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(SystemExit) as exc:
        main(["layers", "smoke_vit", *(a.format(file=tmp_path / "file") for a in argv)])
    assert exc.value.code == 2
    assert message in capsys.readouterr().err
