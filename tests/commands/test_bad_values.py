"""Every option of every front end, driven with generated bad values: each case must end in one clear line and a
non-zero exit, with no traceback and nothing written.

The cases are generated from one table per front end: each number option with its valid range gets the values
just outside it and a common list of junk (empty, words, nan/inf, a 20-digit and a 5,000-digit integer, other
scripts' digits, '1_000', hex, exponents); each output path option gets the places nothing may be written to (an
empty path, a FIFO, a device, a path under a regular file, a read-only folder, a folder for a file and a file for
a folder). ``lvm`` subcommands, ``train.py``, ``model_viz.py`` and the pytest plugin's options are run in-process,
so the several hundred cases cost seconds, not a process each.
"""

from __future__ import annotations

import argparse
import os
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from lvmharness.core.parsing import MAX_BATCH_SIZE, MAX_IMG_SIZE, MAX_SEED

# --- the bad values ----------------------------------------------------------------------------------------------

JUNK_NUMBERS = ["", " ", "x", "1x", "nan", "inf", "-inf", "1e999", "99999999999999999999", "9" * 5000,
                "\u0665\u0666", "1_000", "0x10", "--", "1,2"]


def bad_ints(low: int, high: int) -> list[str]:
    return [str(low - 1), str(high + 1), "1.5", *JUNK_NUMBERS]


def bad_floats(low: float | None = None) -> list[str]:
    """A finite number >= ``low`` (> 0 when low is None) is valid; these are not."""
    below = ["-1"] if low == 0 else ["0", "-1"]
    return [*below, "nan", "inf", "-inf", "1e999", "", "x", "\u0665", "9" * 5000]


def bad_int_lists(high: int) -> list[str]:
    return ["", ",", "0", "1,0", f"1,{high + 1}", "1,x", "1,99999999999999999999", "\u0665\u0666", "1.5", "-1"]


BAD_BYTES = ["", "0", "-1GiB", "nan", "1e3", "\u0665GiB", "2parsecs", "9" * 5000, "2000000TiB", "GiB"]


@dataclass(frozen=True)
class Places:
    """Output locations that must be refused, made once per module (a read-only bind mount is a mount)."""

    root: Path
    fifo: Path
    device: Path | None
    afile: Path
    folder: Path
    read_only: Path | None

    def bad_files(self) -> list[str]:
        return [p for p in ["", str(self.fifo), str(self.device or ""), str(self.afile / "x.json"), str(self.folder),
                            str(self.read_only / "x.json") if self.read_only else ""] if p] + [""]

    def bad_folders(self) -> list[str]:
        out = ["", str(self.afile), str(self.fifo), str(self.afile / "sub")]
        if self.device:
            out.append(str(self.device))
        if self.read_only:
            out += [str(self.read_only), str(self.read_only / "new")]
        return out


@pytest.fixture(scope="module")
def places(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Places]:
    root = tmp_path_factory.mktemp("places")
    fifo = root / "pipe"
    os.mkfifo(fifo)
    device = None
    if os.geteuid() == 0:
        device = root / "null"
        os.mknod(device, stat.S_IFCHR | 0o666, os.makedev(1, 3))  # a private /dev/null
    afile = root / "afile"
    afile.write_text("keep")
    folder = root / "folder"
    folder.mkdir()
    ro = root / "ro"
    ro.mkdir()
    mounted = False
    if os.geteuid() != 0:
        ro.chmod(0o555)
        read_only: Path | None = ro
    elif subprocess.run(["mount", "--bind", str(ro), str(ro)], capture_output=True).returncode == 0:
        mounted = True
        ok = subprocess.run(["mount", "-o", "remount,ro,bind", str(ro)], capture_output=True).returncode == 0
        read_only = ro if ok else None
    else:
        read_only = None  # root without mount rights: the read-only cases are left out (the count says so)
    try:
        yield Places(root, fifo, device, afile, folder, read_only)
    finally:
        if mounted:
            subprocess.run(["umount", str(ro)], check=True)
        ro.chmod(0o755)


# --- the front ends, as tables -----------------------------------------------------------------------------------

RUN = "RUN"  # replaced by a real run folder
OUT = "OUT"  # replaced by a fresh path in the sandbox


@dataclass(frozen=True)
class Front:
    """One command line: ``base`` is a valid call; ``numbers`` maps an option to its bad values; ``files`` and
    ``folders`` name its output options."""

    name: str
    run: str  # "lvm", "train", "viz" or "plugin"
    base: tuple[str, ...]
    numbers: dict[str, list[str]]
    files: tuple[str, ...] = ()
    folders: tuple[str, ...] = ()


B = bad_ints(1, MAX_BATCH_SIZE)
IMG = bad_ints(1, MAX_IMG_SIZE)
FRONTS = [
    Front("latency", "lvm", ("latency", "smoke_vit"),
          {"--batch-size": B, "--img-size": IMG, "--budget-s": bad_floats(0)}, folders=("--out",)),
    Front("flops", "lvm", ("flops", "smoke_vit"),
          {"--batch-size": B, "--img-size": IMG, "--depth": bad_ints(0, 128), "--top": bad_ints(1, 100_000),
           "--scaling": bad_int_lists(MAX_IMG_SIZE)}),
    Front("graph", "lvm", ("graph", "smoke_vit", "-o", OUT), {"--batch-size": B, "--img-size": IMG},
          files=("-o",)),
    Front("layers", "lvm", ("layers", "smoke_vit"),
          {"--batch-size": bad_ints(1, 4096), "--img-size": bad_ints(16, 4096), "--steps": bad_ints(1, 1000),
           "--warmup": bad_ints(0, 1000), "--depth": bad_ints(0, 128)}, folders=("-o",)),
    Front("memory", "lvm", ("memory", "smoke_vit"),
          {"--batch-size": B, "--img-size": IMG, "--layers": bad_ints(0, 10_000), "--timeout-s": bad_floats(),
           "--budget": BAD_BYTES}),
    Front("report", "lvm", ("report", RUN), {}, folders=("-o",)),
    Front("compare", "lvm", ("compare", RUN, RUN),
          {"--latency-threshold": bad_floats(0), "--mem-tolerance": bad_floats(0),
           "--acc-tolerance": bad_floats(0)}),
    Front("baseline", "lvm", ("baseline", RUN, "-o", OUT), {}, files=("-o",)),
    Front("merge", "lvm", ("merge", RUN, "-o", OUT), {}, folders=("-o",)),
    Front("sweep", "lvm", ("sweep", "--executor", "local", "--shards", "1"),
          {"--shards": bad_ints(1, 1001), "--gpus-per-shard": bad_ints(0, 64),
           "--cpus-per-shard": bad_ints(1, 4096), "--time": bad_ints(1, 525_600), "--poll-s": bad_floats(0)},
          folders=("--out",)),
    Front("models", "lvm", ("models",), {"--timm": ["", "  "]}),
    Front("accuracy", "lvm", ("accuracy", "--models", "ladder_resnet_tiny"),
          {"--models": ["", " , "], "--seed": bad_ints(0, MAX_SEED), "--threads": bad_ints(1, 1024),
           "--epochs": bad_ints(1, 1_000_000),
           "--batch-size": B, "--train-images": bad_ints(10, 60_000), "--finetune-epochs": bad_ints(1, 1_000_000),
           "--latency-budget-s": bad_floats(0), "--max-steps-per-epoch": bad_ints(1, 2**40)},
          folders=("--out", "--work-dir")),
    Front("history detect", "lvm", ("history", "detect", "--csv", "series.csv"),
          {"--min-magnitude": bad_floats(), "--z-threshold": bad_floats()}),
    Front("history prune", "lvm", ("history", "prune"), {"--keep-last": bad_ints(0, 1_000_000)}),
    Front("history export", "lvm", ("history", "export", "--format", "csv", "-o", OUT), {}, files=("-o",)),
    Front("history site", "lvm", ("history", "site", "-o", OUT),
          {"--min-magnitude": bad_floats(), "--z-threshold": bad_floats()}, folders=("-o",)),
    Front("train.py", "train", ("--dataset", "synthetic", "--output_dir", OUT, "--results_dir", OUT),
          {"--batch_size": B, "--epochs": bad_ints(1, 1_000_000), "--img_size": IMG, "--workers": bad_ints(0, 1024),
           "--max_steps_per_epoch": bad_ints(1, 2**40), "--max_eval_steps": bad_ints(1, 2**40),
           "--seed": bad_ints(0, MAX_SEED), "--synthetic_size": bad_ints(1, 2**31 - 1),
           "--synthetic_classes": bad_ints(1, 1_000_000), "--phase": bad_ints(1, 2), "--lr": bad_floats(),
           "--weight_decay": bad_floats(0), "--warmup_epochs": bad_floats(0),
           "--label_smoothing": ["1", "-0.1", "nan", "inf", "", "x", "\u0665"]},
          folders=("--output_dir", "--results_dir")),
    Front("model_viz.py", "viz", (), {"--port": bad_ints(1, 65535)}, folders=("--graphs",)),
    Front("pytest plugin", "plugin", (),
          {"--lvm-batch-sizes": bad_int_lists(MAX_BATCH_SIZE), "--lvm-img-sizes": bad_int_lists(MAX_IMG_SIZE),
           "--lvm-budget-s": bad_floats(0), "--lvm-mem-limit": BAD_BYTES, "--lvm-trace-steps": bad_ints(1, 1000),
           "--lvm-shard": ["", "0/2", "3/2", "1/0", "99999999999999999999/2", "\u0661/2", "x"]},
          files=("--lvm-shard-plan",), folders=("--lvm-out",)),
]


@dataclass(frozen=True)
class Case:
    front: Front
    option: str
    value: str | Callable[[Places], str]  # a path case is made from the module's places

    @property
    def id(self) -> str:
        shown = self.value if isinstance(self.value, str) else self.value.__name__
        shown = shown if len(shown) <= 12 else f"{shown[:8]}..{len(shown)}"
        return f"{self.front.name} {self.option} {shown!r}"


def _path_case(kind: str, index: int) -> Callable[[Places], str]:
    def make(places: Places) -> str:
        options = places.bad_files() if kind == "file" else places.bad_folders()
        return options[index] if index < len(options) else ""

    make.__name__ = f"bad {kind} #{index}"
    return make


def generate() -> list[Case]:
    cases = []
    for front in FRONTS:
        for option, values in front.numbers.items():
            cases += [Case(front, option, v) for v in dict.fromkeys(values)]
        for option in front.files:
            cases += [Case(front, option, _path_case("file", i)) for i in range(7)]
        for option in front.folders:
            cases += [Case(front, option, _path_case("folder", i)) for i in range(7)]
    return cases


CASES = generate()


def test_the_table_covers_every_subcommand_and_option() -> None:
    """Every ``lvm`` subcommand is in the table (or has no option that takes a value), and every option of a
    number or a path of each is there: a new option without a row fails here."""
    from lvmharness.commands.main import COMMANDS, load

    no_values = {"env", "train", "viz"}  # env has no options; train and viz are the train.py / model_viz rows
    covered = {f.base[0] for f in FRONTS if f.run == "lvm"}
    assert {c.name for c in COMMANDS} - covered == no_values
    for front in (f for f in FRONTS if f.run == "lvm"):
        parser = argparse.ArgumentParser()
        load(next(c for c in COMMANDS if c.name == front.base[0])).add_arguments(parser)
        typed = {a.option_strings[-1] if a.option_strings[-1] in (*front.numbers, *front.files, *front.folders)
                 else a.option_strings[0] for a in parser._actions
                 if a.option_strings and a.type is not None and a.dest != "help"}
        listed = {*front.numbers, *front.files, *front.folders}
        assert typed <= listed | {"--run-id"}, (front.name, typed - listed)  # run ids have their own tests
    assert len(CASES) > 400  # the count the issue note reports


# --- running one case ---------------------------------------------------------------------------------------------


def tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from lvmharness.store.records import make_record, record_identity
    from lvmharness.store.run_folder import RunStore

    root = tmp_path_factory.mktemp("runs")
    with RunStore(root, "r", fingerprint="0123456789abcdef") as store:
        store.add(make_record(run_id="r", values={"macs": 10, "params": 3}, **record_identity(
            metric="flops", model="m", alias="m", family="vit", device="cpu", dtype="fp32", batch_size=1,
            img_size=32)))
    return store.run_dir


def _plugin_parser() -> argparse.ArgumentParser:
    from lvmharness.bench.config import add_options

    parser = argparse.ArgumentParser(prog="pytest")

    class Group:
        def addoption(self, *names: str, **kwargs: object) -> None:
            parser.add_argument(*names, **kwargs)  # type: ignore[arg-type]

    add_options(Group())
    return parser


def _call(front: Front, argv: list[str]) -> int:
    """The front end in-process; its exit status. Any exception other than SystemExit propagates: a traceback."""
    try:
        if front.run == "lvm":
            from lvmharness.commands.main import main

            return main(argv)
        if front.run == "train":
            from lvmharness.commands.train import main as train_main

            return train_main(argv)
        if front.run == "viz":
            from viz.__main__ import main as viz_main

            return viz_main(argv)
        _plugin_parser().parse_args(argv)
        return 0
    except SystemExit as exc:
        return exc.code if isinstance(exc.code, int) else 1


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_a_bad_value_is_one_line_a_non_zero_exit_and_nothing_written(
        case: Case, places: Places, run_folder: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    import submitit

    def no_executor(*args: object, **kwargs: object) -> None:
        raise AssertionError("a sweep started")

    monkeypatch.setattr(submitit, "AutoExecutor", no_executor)
    monkeypatch.chdir(tmp_path)
    value = case.value if isinstance(case.value, str) else case.value(places)
    argv = [a.replace(RUN, str(run_folder)) for a in case.front.base]
    argv = [str(tmp_path / f"out{i}") if a == OUT else a for i, a in enumerate(argv)]
    if case.option in argv:  # the option under test replaces its valid value in the base call
        i = argv.index(case.option)
        del argv[i:i + 2]
    argv += [case.option, value]
    if case.front.name == "sweep":
        argv += ["--", "no-such-bench-folder"]
    before = (tree(tmp_path), tree(places.root), tree(run_folder))
    code = _call(case.front, argv)
    err = capsys.readouterr().err
    assert code != 0, (argv, err)
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if "error" in ln.lower()]
    assert len(lines) == 1 and len(lines[0]) < 400, err  # one line: what was wrong (a value shown shortened)
    assert (tree(tmp_path), tree(places.root), tree(run_folder)) == before  # nothing written
    assert stat.S_ISFIFO(os.lstat(places.fifo).st_mode) and places.afile.read_text() == "keep"
