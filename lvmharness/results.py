"""The result record (schema v1) and the run folder.

A run lives in ``<out>/<run-id>/``: ``results.json`` (a JSON list of records, rewritten atomically after every
case: temp file, fsync, rename) and ``env.json`` (written once). The JSON Schema of a record is shipped as
``lvmharness/schema/result-v1.schema.json``. Extend the schema, never silently change a field's meaning.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import os
import secrets
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, BinaryIO

SCHEMA_VERSION = 1
STATUSES = ("ok", "oom", "error", "skipped")
PHASES = ("inference", "train", "finetune")
# Torch-free names of the dtype modes a record can carry (the schema's ``dtype`` enum): storage dtypes first, then
# AMP modes (fp32 weights, autocast compute). The torch dtypes behind them are ``devices.DTYPES`` and
# ``execution.DTYPE_MODES``; the CLI takes its choices from here so it need not import torch to parse arguments.
STORAGE_DTYPE_NAMES = ("fp32", "bf16", "fp16")
DTYPE_NAMES = (*STORAGE_DTYPE_NAMES, "amp_bf16", "amp_fp16")
RESULTS_FILE = "results.json"
ENV_FILE = "env.json"


class ResultsFileError(ValueError):
    """A results file or run folder that cannot be read; the message names the file and the problem."""


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_ONE_MS = _dt.timedelta(milliseconds=1)
_last_run_ms = 0


def new_run_id(now: _dt.datetime | None = None) -> str:
    """Start-ordered and unique: UTC time to the millisecond plus 6 random hex digits.

    ``20261130T073631.042Z-f575a4``. Sorting ids as strings sorts runs by start time, which is what
    tools that read several runs (and a user's ``ls``) rely on: two runs that start in the same
    second must not fall back to the random suffix for their order. Within one process the
    millisecond stamp is forced strictly upward, so back-to-back runs (a phase 1 then phase 2 in
    one script) keep their order even inside one millisecond or across a clock step back; the
    random suffix keeps concurrent processes apart.
    """
    global _last_run_ms
    t = now or _dt.datetime.now(_dt.UTC)
    ms = (t - _EPOCH) // _ONE_MS  # integer arithmetic: no float rounding at the millisecond edge
    if now is None:
        ms = max(ms, _last_run_ms + 1)
        _last_run_ms = ms
    stamp = _EPOCH + ms * _ONE_MS
    return f"{stamp:%Y%m%dT%H%M%S}.{ms % 1000:03d}Z-{secrets.token_hex(3)}"


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def case_id(
    metric: str,
    model: str,
    device: str,
    dtype: str,
    batch_size: int | None,
    img_size: int | None,
    options: Mapping[str, Any] | None = None,
) -> str:
    """The id of a case, the same string that pytest shows in brackets (``-k`` selects on it)."""
    return f"{metric}[{case_label(model, device, dtype, batch_size, img_size, options)}]"


def case_label(
    model: str,
    device: str,
    dtype: str,
    batch_size: int | None,
    img_size: int | None,
    options: Mapping[str, Any] | None = None,
) -> str:
    parts = [model, device.replace(":", ""), dtype]
    if batch_size is not None:
        parts.append(f"b{batch_size}")
    if img_size is not None:
        parts.append(str(img_size))
    for key, val in sorted((options or {}).items()):
        if val is True:
            parts.append(key)
        elif val not in (False, None):
            parts.append(f"{key}={val}")
    return "-".join(parts)


def _json_safe(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null rather than writing a file other tools reject."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return str(obj)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write`` so that ``path`` always holds the old or the new complete file, never a torn one:
    a temp file in the same folder, fsync, rename, fsync of the folder."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON (non-finite numbers as null) written atomically."""
    text = json.dumps(_json_safe(obj), indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


def is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, torch.OutOfMemoryError | MemoryError):
        return True
    text = str(exc).lower()
    return isinstance(exc, RuntimeError) and ("out of memory" in text or "can't allocate memory" in text)


@dataclass
class CaseRecorder:
    """Filled in by the code that measures a case; turned into a record when the case ends."""

    identity: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None

    def skip(self, reason: str) -> None:
        self.status, self.error = "skipped", reason


def make_record(
    *,
    run_id: str,
    metric: str,
    model: str,
    alias: str,
    family: str,
    device: str,
    dtype: str,
    batch_size: int | None,
    img_size: int | None,
    phase: str = "inference",
    options: Mapping[str, Any] | None = None,
    status: str = "ok",
    error: str | None = None,
    values: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    case: str | None = None,
) -> dict[str, Any]:
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    if phase not in PHASES:
        raise ValueError(f"phase {phase!r} is not one of {PHASES}")
    opts = dict(options or {})
    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_id,
        "case_id": case or case_id(metric, alias, device, dtype, batch_size, img_size, opts),
        "metric": metric,
        "model": model,
        "alias": alias,
        "family": family,
        "device": device,
        "dtype": dtype,
        "batch_size": batch_size,
        "img_size": img_size,
        "phase": phase,
        "options": opts,
        "status": status,
        "error": error,
        "values": dict(values or {}),
        "provenance": dict(provenance or {}),
        "created_utc": utc_now(),
    }


class RunStore:
    """One run folder. Records are kept in memory and the whole list is rewritten atomically on each add,
    so a crash at any moment leaves a valid ``results.json`` holding every case finished before it."""

    def __init__(self, root: Path | str, run_id: str | None = None) -> None:
        self.run_id = run_id or new_run_id()
        self.run_dir = Path(root) / self.run_id
        self.results_path = self.run_dir / RESULTS_FILE
        self.env_path = self.run_dir / ENV_FILE
        self.records: list[dict[str, Any]] = (
            load_records(self.results_path) if self.results_path.exists() else []
        )

    def add(self, record: Mapping[str, Any]) -> dict[str, Any]:
        rec = dict(record)
        if rec.get("run_id") != self.run_id:
            raise ValueError(f"record run_id {rec.get('run_id')!r} does not belong to run {self.run_id!r}")
        self.records.append(rec)
        atomic_write_json(self.results_path, self.records)
        return rec

    def write_env(self, env: Mapping[str, Any]) -> None:
        atomic_write_json(self.env_path, dict(env))

    @contextmanager
    def case(self, **identity: Any) -> Iterator[CaseRecorder]:
        """Record one case whatever happens inside the block.

        Normal exit: the recorder's status (``ok`` unless the code set another). Out-of-memory: an ``oom``
        record, and the exception is swallowed: an OOM is a result. Any other exception: an ``error`` record
        with the message, then the exception propagates so the caller (pytest) reports it.
        """
        rec = CaseRecorder(identity=dict(identity))
        try:
            yield rec
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            status = "oom" if is_oom(exc) else "error"
            # pytest's skip/xfail exceptions are not errors: record them as skipped.
            if type(exc).__name__ in ("Skipped", "XFailed"):
                status = "skipped"
            message = f"{type(exc).__name__}: {exc}"
            rec.status, rec.error = status, message
            prov = dict(rec.provenance)
            if status == "error":
                prov["traceback"] = traceback.format_exc(limit=8)
            self.add(
                make_record(
                    run_id=self.run_id, status=status, error=message, values=rec.values, provenance=prov,
                    **rec.identity,
                )
            )
            if status != "oom":
                raise
        else:
            self.add(
                make_record(
                    run_id=self.run_id, status=rec.status, error=rec.error, values=rec.values,
                    provenance=rec.provenance, **rec.identity,
                )
            )


def load_records(path: Path | str) -> list[dict[str, Any]]:
    """Records from a run folder or a results file, with a clear error for anything malformed."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.exists():
        raise ResultsFileError(f"{p}: no such results file (expected a run folder or a {RESULTS_FILE})")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ResultsFileError(f"{p}: expected a JSON list of record objects")
    for i, rec in enumerate(data):
        if rec.get("schema") != SCHEMA_VERSION:
            raise ResultsFileError(
                f"{p}: record {i} has schema {rec.get('schema')!r}; this lvmharness reads schema {SCHEMA_VERSION}"
            )
    return data


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one record."""
    text = resources.files("lvmharness").joinpath("schema/result-v1.schema.json").read_text(encoding="utf-8")
    loaded: dict[str, Any] = json.loads(text)
    return loaded
