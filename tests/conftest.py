"""Fixtures shared by the tests of model sources, the Python API and the page."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvmharness.core.fileio import atomic_write_json
from lvmharness.models import aliases
from lvmharness.models.aliases import graph_name
from tests.helpers.browser import chromium_page

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "own-model"


@pytest.fixture
def user_modules(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A user's folder with the example's mymodels.py, importable; afterwards the user's modules and the aliases
    they registered are gone again, so other tests see the built-in table only."""
    shutil.copy(EXAMPLE / "mymodels.py", tmp_path / "mymodels.py")
    monkeypatch.syspath_prepend(str(tmp_path))
    before = set(aliases.alias_names())
    yield tmp_path
    for alias in set(aliases.alias_names()) - before:
        aliases.unregister(alias)
    for name in ("mymodels", "badmodels", "brokenmodule", "evilmod"):
        sys.modules.pop(name, None)


@pytest.fixture
def page() -> Iterator[object]:
    """A headless chromium page (``tests/helpers/browser.py``); the test is skipped where chromium is missing."""
    with chromium_page() as pg:
        yield pg


@pytest.fixture
def graphs(tmp_path: Path) -> Path:
    """A graphs folder holding what ``lvm graph smoke_vit`` saves (smoke_vit at 32 px, batch 1, fp32)."""
    from lvmharness.measure.graph import build_graph  # lazy: torch, for the tests that ask for this fixture only

    d = tmp_path / "graphs"
    d.mkdir()
    atomic_write_json(d / f"{graph_name('smoke_vit', 32, 1, 'fp32')}.json", build_graph("smoke_vit"))
    return d
