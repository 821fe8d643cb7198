"""Mutation testing of the modules that decide numbers and verdicts (``make mutation``; not part of CI: it is slow).

Each module is mutated by mutmut against its OWN fast test files only, so a score says how well those tests pin that
module down. mutmut forks the already-imported test process for each mutant (no torch re-import per mutant) and
runs only the tests that reach the mutated function: that is why it is the tool here. Each module runs in a scratch
copy under ``.mutation/<module>/`` (mutmut writes its mutants next to the code it mutates), never in the work tree.

    python tools/mutation.py                     # every module
    python tools/mutation.py stats compare       # some
    python tools/mutation.py --again results     # after adding tests: re-check only the last run's survivors
    MUTATION_TIMEOUT_S=900 MUTATION_SHOW=10 python tools/mutation.py results

Prints the surviving mutants (as diffs) and, per module, killed / (killed + survived), with mutants that no selected
test reaches counted as survivors. Mutants that cannot change behaviour are listed with the reason in
``tools/equivalent_mutants/<module>.txt`` and left out of the score.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCRATCH = ROOT / ".mutation"
COPY = ("lvmharness", "tests", "benches", "conftest.py", "pytest.ini")
IGNORE = shutil.ignore_patterns("__pycache__", "*.pyc")

# module -> (file to mutate, pytest arguments selecting its own fast tests)
MODULES: dict[str, tuple[str, list[str]]] = {
    "stats": ("lvmharness/core/stats.py", ["tests/core/test_stats.py"]),
    "compare": ("lvmharness/store/compare.py", ["tests/store/test_compare.py", "-k", "not committed_baseline"]),
    "results": ("lvmharness/store/run_folder.py", ["tests/store/test_results.py",
                                                  "tests/store/test_store_concurrency.py",
                                          "tests/store/test_shard_merge.py", "-m", "not slow",
                                          # writers in other processes: seconds each, and they import the
                                          # unmutated package
                                          "-k", "not four_writers and not kill_9"]),
    "latency": ("lvmharness/measure/latency.py", ["tests/measure/test_latency.py"]),
    "flops": ("lvmharness/measure/flops.py", ["tests/measure/test_flops.py"]),
}



def _equivalent() -> dict[str, str]:
    """Mutants that cannot change what the code computes, with the reason: ``tools/equivalent_mutants/<module>.txt``,
    one ``NAME reason`` per line (mutmut's names are stable per function; ``#`` starts a comment line)."""
    out: dict[str, str] = {}
    for path in sorted((ROOT / "tools" / "equivalent_mutants").glob("*.txt")):
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip() and not line.lstrip().startswith("#"):
                name, _, reason = line.strip().partition(" ")
                out[name] = reason.strip()
    return out


EQUIVALENT = _equivalent()


def _config(target: str, tests: list[str]) -> str:
    quoted = ", ".join(f'"{t}"' for t in tests)
    return (
        "[tool.mutmut]\n"
        'source_paths = ["lvmharness/"]\n'
        f'only_mutate = ["{target}"]\n'
        f"pytest_add_cli_args_test_selection = [{quoted}]\n"
        'pytest_add_cli_args = ["-p", "no:cacheprovider", "-q", "-x"]\n'
        'also_copy = ["benches/", "conftest.py", "pytest.ini"]\n'
    )


def _refresh_tests(work: Path, target: str, tests: list[str]) -> None:
    """New and changed tests into an existing scratch copy (the mutated code must be unchanged for --again)."""
    for sub in ("tests", "mutants/tests"):
        shutil.rmtree(work / sub, ignore_errors=True)
        shutil.copytree(ROOT / "tests", work / sub, ignore=IGNORE)
    for place in (work, work / "mutants"):
        (place / "pyproject.toml").write_text(_config(target, tests))


def _prepare(name: str, target: str, tests: list[str]) -> Path:
    work = SCRATCH / name
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    for item in COPY:
        src = ROOT / item
        if src.is_dir():
            shutil.copytree(src, work / item, ignore=IGNORE)
        elif src.exists():
            shutil.copy2(src, work / item)
    (work / "pyproject.toml").write_text(_config(target, tests))
    return work


def _mutmut(work: Path, *args: str, timeout: float | None = None) -> subprocess.CompletedProcess[str]:
    # One thread: mutmut forks its test process per mutant, and a child forked after the parent ran multi-threaded
    # torch (OpenMP) hangs in its first parallel region; each hang would count as a killed mutant ("timeout").
    env = {**os.environ, "NO_COLOR": "1", "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "mutmut", *args], cwd=work, env=env, capture_output=True,
                          text=True, timeout=timeout)


def _status(work: Path) -> dict[str, str]:
    listing = _mutmut(work, "results", "--all", "true").stdout
    return dict(re.findall(r"^\s*(\S+__mutmut_\d+): (.+)$", listing, flags=re.M))


def run_module(name: str, timeout_s: float, again: bool = False) -> tuple[int, int, int]:
    """(killed, survived, excluded as equivalent) for one module; prints the survivors.

    ``again``: keep the last run's verdicts and re-check only its survivors against the current tests. Sound
    while tests are only added (a mutant killed before stays killed) and the mutated module is unchanged."""
    target, tests = MODULES[name]
    work = SCRATCH / name
    retry: list[str] = []
    if again:
        if not (work / target).is_file():
            print(f"{name}: no earlier run to continue; running every mutant")
            again = False
        elif (ROOT / target).read_bytes() != (work / target).read_bytes():
            print(f"{name}: {target} changed since the last run; running every mutant again")
            again = False
        else:
            retry = [m for m, s in _status(work).items() if s in ("survived", "no tests") and m not in EQUIVALENT]
            _refresh_tests(work, target, tests)
    if not again:
        work = _prepare(name, target, tests)
    try:
        if not again or retry:  # --again with no survivors left: nothing to run
            children = os.environ.get("MUTATION_CHILDREN", "2")
            proc = _mutmut(work, "run", "--max-children", children, *retry, timeout=timeout_s)
            if proc.returncode:
                print(f"{name}: mutmut run failed ({proc.returncode}):\n{proc.stdout[-2000:]}{proc.stderr[-2000:]}")
    except subprocess.TimeoutExpired:
        print(f"{name}: stopped after {timeout_s:.0f} s; the score covers the mutants checked so far")
    status = _status(work)
    killed = sum(s in ("killed", "timeout") for s in status.values())
    survivors = [m for m, s in status.items() if s in ("survived", "no tests") and m not in EQUIVALENT]
    excluded = sum(m in EQUIVALENT and s in ("survived", "no tests") for m, s in status.items())
    unchecked = sum(s == "not checked" for s in status.values())
    show = int(os.environ.get("MUTATION_SHOW", "30"))  # `mutmut show` takes a second or two per mutant
    for mutant in survivors[:show]:
        print(f"\n--- survived: {mutant} ({status[mutant]})")
        print(_mutmut(work, "show", mutant).stdout.strip())
    if survivors[show:]:
        print(f"\n... and {len(survivors) - show} more (cd {work} && mutmut show NAME):")
        print("\n".join(f"  {m} ({status[m]})" for m in survivors[show:]))
    decided = killed + len(survivors)
    score = f"{killed / decided:.0%}" if decided else "n/a"
    print(f"\n{name}: {killed} killed, {len(survivors)} survived, {excluded} equivalent excluded, "
          f"{unchecked} not checked -> score {score} ({target} against {' '.join(tests)})")
    return killed, len(survivors), excluded


def main(argv: list[str]) -> int:
    again = "--again" in argv
    argv = [a for a in argv if a != "--again"]
    names = argv or list(MODULES)
    unknown = [n for n in names if n not in MODULES]
    if unknown:
        print(f"unknown module(s) {unknown}; choose from {list(MODULES)}", file=sys.stderr)
        return 2
    if shutil.which("mutmut") is None and subprocess.run([sys.executable, "-c", "import mutmut"]).returncode:
        print("mutmut is not installed: pip install -e '.[dev]'", file=sys.stderr)
        return 2
    timeout_s = float(os.environ.get("MUTATION_TIMEOUT_S", "1800"))
    rows = [(n, *run_module(n, timeout_s, again)) for n in names]
    print("\nmodule     killed  survived  equivalent  score")
    for n, k, s, e in rows:
        print(f"{n:<10} {k:>6}  {s:>8}  {e:>10}  {k / (k + s):.0%}" if k + s else f"{n:<10} no mutants checked")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
