"""The docs: generated tables equal what the code generates, the generator stays torch-free, the README stays a
front page whose links resolve, and the site builds under ``mkdocs build --strict``."""

from __future__ import annotations

import re
import subprocess
import sys
from dataclasses import fields
from pathlib import Path
from types import ModuleType

import pytest

from lvmharness.bench.config import LvmConfig
from lvmharness.store.keys import KEYS
from lvmharness.store.rules import RULES
from tests.helpers.tools import load_tool

ROOT = Path(__file__).resolve().parents[1]
GENERATOR = ROOT / "tools" / "gen_docs.py"
REFERENCE = ROOT / "docs" / "reference"


def _generator() -> ModuleType:
    return load_tool("gen_docs")


def _first_column(page: Path, section: int = 0) -> list[str]:
    """The code spans of a Markdown table's first column, header and rule rows left out, in the page's
    ``section``-th part (parts are split at ``## `` headings)."""
    part = re.split(r"^## ", page.read_text(encoding="utf-8"), flags=re.M)[section]
    return re.findall(r"^\| `([^`]+)` \|", part, re.M)


def test_the_committed_tables_are_what_the_code_generates() -> None:
    gen = _generator()
    for name, render in gen.PAGES.items():
        committed = (REFERENCE / name).read_text(encoding="utf-8")
        assert committed == render(), f"docs/reference/{name} is stale: run python tools/gen_docs.py"
    assert gen.stale() == []


def test_the_check_mode_names_a_stale_page(tmp_path: Path) -> None:
    gen = _generator()
    gen.write(tmp_path)
    assert gen.stale(tmp_path) == []
    (tmp_path / "value-keys.md").write_text("edited by hand\n", encoding="utf-8")
    (tmp_path / "plugin-options.md").unlink()
    assert sorted(gen.stale(tmp_path)) == ["plugin-options.md", "value-keys.md"]


def test_every_option_and_every_value_key_has_one_row() -> None:
    # Independent of the generator: one option per field of the parsed config, one row per declared key, in order.
    options = _first_column(REFERENCE / "plugin-options.md")
    assert len(options) == len(fields(LvmConfig)) == len(set(options))
    assert all(name.startswith("--lvm-") for name in options)
    assert _first_column(REFERENCE / "value-keys.md") == [k.name for k in KEYS]
    assert _first_column(REFERENCE / "value-keys.md", section=1) == list(RULES)  # the compare rules, one row each


def test_a_row_shows_the_key_as_declared() -> None:
    text = (REFERENCE / "value-keys.md").read_text(encoding="utf-8")
    # latency_ms_p50 is declared in milliseconds, lower is better, compared on its raw samples, a CSV column and in
    # extra_info; top1 in percent, higher is better, compared in points.
    assert "| `latency_ms_p50` | ms | lower | samples on `samples` | yes | yes | median time of one forward" in text
    assert "| `top1` | % | higher | points | yes |  | top-1 accuracy on the validation split |" in text


def test_a_help_line_with_markup_stays_one_cell() -> None:
    gen = _generator()
    assert gen.cell("a|b <run>/x *y*") == r"a\|b &lt;run&gt;/x \*y\*"
    assert gen.code("a|b") == r"`a\|b`"


def test_the_generator_imports_neither_torch_nor_timm() -> None:
    code = (f"import runpy, sys; runpy.run_path({str(GENERATOR)!r}, run_name='gen_docs'); "
            "print(sorted(m for m in ('torch', 'timm') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "[]"


def test_the_readme_is_a_front_page_whose_links_resolve() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert len(readme.splitlines()) <= 250
    for command in ('make bench ARGS="-k vit"', "make test"):
        assert command in readme
    targets = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", readme)
    local = [t for t in targets if not t.startswith(("http://", "https://"))]
    assert local, "the README links to no docs page"
    missing = [t for t in local if not (ROOT / t).exists()]
    assert missing == []


def test_the_architecture_page_names_every_package() -> None:
    packages = sorted(f"lvmharness.{init.parent.name}" for init in (ROOT / "lvmharness").glob("*/__init__.py"))
    assert "lvmharness.core" in packages
    page = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    absent = [p for p in [*packages, "lvmharness.viz"] if p not in page]
    assert absent == []


def test_every_docs_page_is_in_the_nav() -> None:
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    pages = sorted(p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md"))
    assert pages and [p for p in pages if f": {p}\n" not in nav] == []


@pytest.mark.slow
def test_the_site_builds_strict(tmp_path: Path) -> None:
    pytest.importorskip("mkdocs", reason="the docs extra is not installed (pip install -e '.[docs]')")
    pytest.importorskip("mkdocstrings_handlers.python", reason="the docs extra is not installed")
    proc = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "-d", str(tmp_path / "site")],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    api = (tmp_path / "site" / "api" / "index.html").read_text(encoding="utf-8")
    for name in ("measure_latency", "count_flops", "measure_memory", "load_results", "register_model"):
        assert f'id="lvmharness.{name}"' in api
    assert 'id="lvmharness.bench.fixture.Lvm"' in api
