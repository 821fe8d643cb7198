"""The result record (schema v1): its identity fields, the case id pytest shows, and building one record.

The JSON Schema of a record is shipped as ``lvmharness/schema/result-v1.schema.json`` (``record_schema``). Extend
the schema, never silently change a field's meaning.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from lvmharness.core.clock import utc_now
from lvmharness.core.errors import UserError
from lvmharness.store import keys

SCHEMA_VERSION = 1
STATUSES = ("ok", "oom", "error", "skipped")
PHASES = ("inference", "train", "finetune")
UNKNOWN_MACHINE = "unknown"  # the fingerprint of records written before fingerprints existed (or without one)
_FINGERPRINT_RE = re.compile(r"[0-9a-f]{16}")  # 16 hex digits of SHA-256 (runtime.machine.fingerprint_of)


class RecordValueError(UserError, ValueError):
    """A record asked for with a status or phase outside the schema; the message names the valid ones."""


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


def record_fingerprint(record: Mapping[str, Any]) -> str:
    """A record's machine fingerprint, or ``"unknown"`` for records written before fingerprints (or with a
    malformed one): the one spelling of "which machine" that compare, merge and the history gate share."""
    fp = record.get("fingerprint")
    return fp if isinstance(fp, str) and _FINGERPRINT_RE.fullmatch(fp) else UNKNOWN_MACHINE


def is_contended(record: Mapping[str, Any]) -> bool:
    """Measured on a busy machine: a ``flag`` key (``contended``) is true, so its measured values decide nothing."""
    values = record.get("values") or {}
    return any(values.get(k) is True for k in keys.FLAG_KEYS)


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


def record_identity(
    *,
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
) -> dict[str, Any]:
    """The identity fields of a result record (what was measured, how), in the record's key order. Every front
    end (bench cases, train.py, the Python API, ``lvm latency``) builds them here; ``make_record`` adds the rest.
    ``model`` is the model as records name it (timm name, ``torchvision:NAME``, ``module:callable``), ``alias``
    as the user named it (the case id uses it)."""
    return {
        "metric": metric,
        "model": model,
        "alias": alias,
        "family": family,
        "device": device,
        "dtype": dtype,
        "batch_size": batch_size,
        "img_size": img_size,
        "phase": phase,
        "options": dict(options or {}),
    }


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
        raise RecordValueError(f"status {status!r} is not one of {STATUSES}")
    if phase not in PHASES:
        raise RecordValueError(f"phase {phase!r} is not one of {PHASES}")
    ident = record_identity(metric=metric, model=model, alias=alias, family=family, device=device, dtype=dtype,
                            batch_size=batch_size, img_size=img_size, phase=phase, options=options)
    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_id,
        "case_id": case or case_id(metric, alias, device, dtype, batch_size, img_size, ident["options"]),
        **ident,
        "status": status,
        "error": error,
        "values": dict(values or {}),
        "provenance": dict(provenance or {}),
        "created_utc": utc_now(),
    }
