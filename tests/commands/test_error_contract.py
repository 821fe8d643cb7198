"""The error contract of ``lvm``: a ``UserError`` is one line on stderr and exit 2; anything else is a bug and shows
its traceback, exit 1 -- a ValueError raised by a bug is not a user's bad input."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from lvmharness.commands.main import COMMANDS

# Runs `lvm NAME` in a fresh interpreter whose command module is replaced by one that raises EXC.
_INJECT = """
import sys, types
import lvmharness.commands.main as m
from lvmharness.core.errors import BadValueError, ConfigError, UserError
from lvmharness.models.aliases import ModelError
def run(args):
    raise {exc}
fake = types.SimpleNamespace(run=run, add_arguments=lambda parser: None)
m.load = lambda command: fake
sys.exit(m.main([{name!r}]))
"""


def _lvm_with(name: str, exc: str) -> subprocess.CompletedProcess[str]:
    code = _INJECT.format(exc=exc, name=name)
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_an_internal_error_shows_its_traceback_and_exits_1(name: str) -> None:
    proc = _lvm_with(name, "ValueError('an internal invariant broke')")
    assert proc.returncode == 1, proc.stderr
    assert "Traceback (most recent call last)" in proc.stderr
    assert proc.stderr.rstrip().endswith("ValueError: an internal invariant broke")


@pytest.mark.parametrize("name", [c.name for c in COMMANDS])
def test_a_user_error_is_one_line_and_exits_2(name: str) -> None:
    proc = _lvm_with(name, "BadValueError('--batch-size 0 must be a positive integer')")
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr == f"lvm {name}: error: --batch-size 0 must be a positive integer\n"


@pytest.mark.parametrize(
    "exc",
    ["KeyError('x')", "RuntimeError('x')", "TypeError('x')", "ZeroDivisionError('x')", "AssertionError('x')"],
)
def test_no_other_exception_type_passes_for_bad_input(exc: str) -> None:
    proc = _lvm_with("compare", exc)
    assert proc.returncode == 1 and "Traceback" in proc.stderr, proc.stderr


@pytest.mark.parametrize("exc", ["ConfigError('{opt:lr} must be > 0')", "ModelError('unknown model x')",
                                 "UserError('nothing to do')"])
def test_every_user_error_class_is_one_line(exc: str) -> None:
    proc = _lvm_with("compare", exc)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr and proc.stderr.count("\n") == 1, proc.stderr


def test_a_real_user_mistake_is_one_line(tmp_path: Path) -> None:
    missing = tmp_path / "nothing-here.json"
    proc = subprocess.run([sys.executable, "-m", "lvmharness", "compare", str(missing), str(missing)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("lvm compare: error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert str(missing) in proc.stderr


def test_user_errors_of_the_library_derive_from_user_error() -> None:
    """The exception classes a user can cause, wherever they live, are UserErrors (so the CLI's one except holds)."""
    from lvmharness.core.errors import BadValueError, ConfigError, UserError
    from lvmharness.core.outputs import OutputPathError
    from lvmharness.formats.graph_format import GraphFormatError
    from lvmharness.models.aliases import ModelError
    from lvmharness.runtime.devices import DeviceUnavailableError
    from lvmharness.store.loading import ResultsFileError
    from lvmharness.store.merge import MergeError
    from lvmharness.store.record_schema import RecordError
    from lvmharness.store.rules import CompareError

    for cls in (BadValueError, ConfigError, OutputPathError, GraphFormatError, ModelError, DeviceUnavailableError,
                CompareError, MergeError, RecordError, ResultsFileError):
        assert issubclass(cls, UserError), cls
