"""A measurement in a fresh Python process, and the one line of result it sends back.

The parent runs ``python -m <module> '<payload json>'`` (:func:`run_module`); the child's ``__main__`` rebuilds its
case from the payload, does the work and prints exactly one ``LVM_RESULT {json}`` line (:func:`report`). The line
holds a :class:`ChildResult`: ``ok`` with its values, or ``oom`` / ``error`` with the exception's text. A child that
crashes, is killed or runs past its time is an ``error`` result in the parent, never a raise: the caller goes on
with the next case and writes the record.

Standard library only: the child protocol is the same for every measurement that needs a process of its own.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from lvmharness.core.oom import is_oom

RESULT_TAG = "LVM_RESULT "
STDERR_TAIL = 2000  # characters of the child's stderr kept with an error result


@dataclass
class ChildResult:
    status: str  # ok | oom | error
    error: str | None = None
    measured: dict[str, Any] = field(default_factory=dict)  # the record's values
    notes: dict[str, Any] = field(default_factory=dict)  # the record's provenance

    def values(self) -> dict[str, Any]:
        return dict(self.measured)

    def provenance(self) -> dict[str, Any]:
        return dict(self.notes)


def report(work: Callable[[], ChildResult | dict[str, Any]]) -> int:
    """In a child: run ``work`` and print its result (a dict becomes the values of an ok result) as the one
    ``LVM_RESULT`` line the parent reads; an exception becomes an oom or error result, never a lost child."""
    try:
        out = work()
        result = out if isinstance(out, ChildResult) else ChildResult("ok", None, out)
    except BaseException as exc:  # reported to the parent, which writes the record
        status = "oom" if is_oom(exc) else "error"
        result = ChildResult(status, f"{type(exc).__name__}: {exc}")
    print(RESULT_TAG + json.dumps(asdict(result)), flush=True)
    return 0


def _child_env() -> dict[str, str]:
    """The child imports what this process can: a user's model module (``mymodels:build``) may be on a sys.path
    entry that pytest or the caller added at run time rather than on PYTHONPATH. The interpreter's own paths
    (stdlib, site-packages) are left to the child's start-up, in their usual order."""
    own = (sys.prefix, sys.base_prefix)
    extra = [p for p in sys.path if p and not p.startswith(own)]
    return {**os.environ, "PYTHONPATH": os.pathsep.join(extra)}


def _read_result(out: str, err: str, code: int, wall: float) -> ChildResult:
    """The child's ``LVM_RESULT`` line (the last one), or an error result that says how the child ended."""
    for line in reversed(out.splitlines()):
        if line.startswith(RESULT_TAG):
            result = ChildResult(**json.loads(line[len(RESULT_TAG):]))
            result.notes["child_wall_s"] = wall
            return result
    how = f"killed by signal {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"
    return ChildResult("error", f"child process {how} before reporting a result",
                       notes={"stderr_tail": err[-STDERR_TAIL:], "child_wall_s": wall})


def run_module(
    module: str,
    payload: dict[str, Any],
    *,
    timeout_s: float = 900.0,
    on_spawn: Callable[[subprocess.Popen[str]], None] | None = None,
) -> ChildResult:
    """``python -m module '<payload json>'`` in a fresh process; its ``LVM_RESULT`` line (see :func:`report`) as
    a result. A child that crashes, is killed or runs past ``timeout_s`` is an ``error`` result, never a raise."""
    cmd = [sys.executable, "-m", module, json.dumps(payload)]
    started = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_child_env())
    if on_spawn is not None:
        on_spawn(proc)
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        return ChildResult("error", f"child process exceeded {timeout_s:.0f} s and was killed",
                           notes={"stderr_tail": err[-STDERR_TAIL:]})
    return _read_result(out, err, proc.returncode, time.perf_counter() - started)


def main(argv: list[str], prepare: Callable[[dict[str, Any]], Callable[[], ChildResult | dict[str, Any]]]) -> int:
    """A child module's ``__main__``: ``prepare`` turns the payload the parent sent (``argv[1]``, JSON) into the
    work to report on. A payload that ``prepare`` rejects is a bug of the parent: it raises, and the parent sees a
    child that exited before reporting."""
    return report(prepare(json.loads(argv[1])))
