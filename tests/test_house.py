"""The shape of the house: the import contracts of pyproject.toml hold and catch a forbidden import, and no file or
function outgrows what a reader can hold (400 lines a file, 60 lines a function body)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60
# Where the limits are knowingly exceeded, with the reason. Keep this empty unless a split would hurt the reader.
EXCEPTED: dict[str, str] = {}


def _lint_imports(cwd: Path) -> subprocess.CompletedProcess[str]:
    # --no-cache: a cached graph of the real tree must not answer for a changed copy.
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=cwd, capture_output=True, text=True, timeout=300)


def _copy_tree(dest: Path) -> Path:
    for name in ("lvmharness", "viz"):
        shutil.copytree(ROOT / name, dest / name, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", dest / "pyproject.toml")
    return dest


def test_the_import_contracts_hold() -> None:
    proc = _lint_imports(ROOT)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        # torch inside a function of the torch-free store
        ("lvmharness/store/keys.py", "def _sneak() -> None:\n    import torch  # noqa: F401\n", "never import torch"),
        # the base reaching up into the store
        ("lvmharness/core/stats.py", "from lvmharness.store import keys  # noqa: F401\n", "imports nothing else"),
        # measurement reaching up into a front end
        ("lvmharness/measure/budget.py", "from lvmharness.commands import main  # noqa: F401\n", "Layers"),
        # one front end importing another
        ("lvmharness/bench/shard.py", "from lvmharness import api  # noqa: F401\n", "Layers"),
    ],
)
def test_a_forbidden_import_breaks_a_contract(tmp_path: Path, module: str, line: str, contract: str) -> None:
    tree = _copy_tree(tmp_path)
    with (tree / module).open("a", encoding="utf-8") as fh:
        fh.write("\n" + line)
    proc = _lint_imports(tree)
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-2000:]
    broken = proc.stdout.split("Broken contracts", 1)[-1]
    assert contract in broken and Path(module).with_suffix("").as_posix().replace("/", ".") in broken, broken


def _sources() -> list[Path]:
    files = [*(ROOT / "lvmharness").rglob("*.py"), *(ROOT / "viz").rglob("*.py")]
    files += [*(ROOT / "viz" / "static").glob("*.js")]
    return sorted(p for p in files if "__pycache__" not in p.parts)


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of the body, from its first statement after the docstring to its last line."""
    body = node.body
    if len(body) > 1 and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
            and isinstance(body[0].value.value, str):
        body = body[1:]
    return (node.end_lineno or node.lineno) - body[0].lineno + 1


def test_no_file_is_over_400_lines() -> None:
    over = {}
    for path in _sources():
        rel = path.relative_to(ROOT).as_posix()
        n = len(path.read_text(encoding="utf-8").splitlines())
        if n > MAX_FILE_LINES and rel not in EXCEPTED:
            over[rel] = n
    assert not over, f"files over {MAX_FILE_LINES} lines: {over}"


def test_no_function_body_is_over_60_lines() -> None:
    over = {}
    for path in _sources():
        if path.suffix != ".py":
            continue
        rel = path.relative_to(ROOT).as_posix()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), rel)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                key = f"{rel}:{node.lineno} {node.name}"
                if (n := _body_lines(node)) > MAX_FUNCTION_LINES and key not in EXCEPTED:
                    over[key] = n
    assert not over, f"function bodies over {MAX_FUNCTION_LINES} lines: {over}"


def test_the_body_count_skips_the_docstring_only() -> None:
    src = 'def f():\n    """doc\n    more"""\n    a = 1\n    return a\n'
    node = ast.parse(src).body[0]
    assert isinstance(node, ast.FunctionDef)
    assert _body_lines(node) == 2
