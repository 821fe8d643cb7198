"""Fixtures shared by the tests of model sources, the Python API and the page."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from lvmharness.models import aliases

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
