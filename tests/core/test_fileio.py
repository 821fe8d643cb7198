"""Durable file I/O: atomic replacement, the mode the umask gives, the JSON text of the project's files."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any, BinaryIO

import pytest

from lvmharness.core import fileio, procfs
from lvmharness.core.fileio import atomic_write, atomic_write_json


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


def test_json_files_are_indented_and_store_other_objects_as_text(tmp_path: Path) -> None:
    # One value per line (indent 1) so that results files diff line by line; a Path (or any non-JSON object) is
    # stored as its text, NaN as null.
    path = tmp_path / "x.json"
    atomic_write_json(path, {"name": "vit", "ms": [1.5, float("nan")], "where": Path("/data/x")})
    assert path.read_text() == '{\n "name": "vit",\n "ms": [\n  1.5,\n  null\n ],\n "where": "/data/x"\n}\n'


def test_the_umask_is_read_without_setting_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Setting the umask, even for an instant, races every other thread that creates a file meanwhile: where
    # /proc/self/status is there, it is only read.
    old = os.umask(0o027)
    try:
        real_umask = os.umask
        calls: list[int] = []

        def spy(mask: int) -> int:
            calls.append(mask)
            return real_umask(mask)

        monkeypatch.setattr(os, "umask", spy)
        got = fileio.umask()
        monkeypatch.undo()
    finally:
        os.umask(old)
    assert got == 0o027 and calls == []


def test_the_umask_without_proc_is_set_and_put_back(monkeypatch: pytest.MonkeyPatch) -> None:
    def no_proc(*args: Any, **kwargs: Any) -> Any:
        raise FileNotFoundError("/proc is not mounted")

    monkeypatch.setattr(procfs, "open", no_proc, raising=False)
    old = os.umask(0o037)
    try:
        got = fileio.umask()
        after = os.umask(0o037)  # what the process umask is now: must still be 0o037
    finally:
        os.umask(old)
    assert (got, after) == (0o037, 0o037)


def test_atomic_write_stages_a_hidden_tmp_file_named_after_the_target(tmp_path: Path) -> None:
    # Hidden and ending in .tmp: a copy left by a crash is never taken for a results or env file (the views and
    # the writers' files are found by their names) and says which file it was for.
    path = tmp_path / "env.json"
    seen: list[str] = []

    def write(fh: BinaryIO) -> None:
        seen.extend(p.name for p in tmp_path.iterdir())
        fh.write(b"{}\n")

    atomic_write(path, write)
    (name,) = seen
    assert re.fullmatch(r"\.env\.json\.\w+\.tmp", name), name
