"""The JSON Schema of a result record, and the check every reader runs on the records it loads.

The shipped file ``schema/result-v1.schema.json`` describes the record; the type and meaning of each declared value
key come from ``lvmharness.store.keys`` (one table), so the two cannot drift apart. A record that breaks the schema is
reported by file, record index, case id and field — never a KeyError three calls later in a reader.
"""

from __future__ import annotations

import copy
import functools
import json
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from lvmharness.core.errors import UserError
from lvmharness.store import keys

SCHEMA_FILE = "schema/result-v1.schema.json"


class RecordError(UserError, ValueError):
    """A record that does not match the schema; the message names the file, the record and the field."""


@functools.cache
def _shipped() -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(resources.files("lvmharness").joinpath(SCHEMA_FILE).read_text("utf-8"))
    return loaded


def record_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one record: the shipped file plus a property per declared value key."""
    schema = copy.deepcopy(_shipped())
    schema["properties"]["values"]["properties"] = keys.value_properties()
    return schema


@functools.cache
def _validator() -> Any:
    import jsonschema  # imported when records are read, not when the CLI starts

    return jsonschema.Draft202012Validator(record_schema())


def _field(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path) or "(the record itself)"


def validate_records(where: Path | str, records: Sequence[Any], error: type[ValueError] = RecordError) -> None:
    """Raise ``error`` at the first record of ``records`` (read from ``where``) that breaks the schema."""
    from jsonschema.exceptions import best_match

    version = _shipped()["properties"]["schema"]["const"]
    validator = _validator()
    for i, rec in enumerate(records):
        if not isinstance(rec, dict):
            raise error(f"{where}: record {i} is a JSON {type(rec).__name__}, not an object")
        if rec.get("schema") != version:
            raise error(f"{where}: record {i} has schema {rec.get('schema')!r}; this lvmharness reads schema {version}")
        err = best_match(validator.iter_errors(rec))
        if err is None:
            continue
        case = rec.get("case_id")
        label = f"record {i} ({case})" if isinstance(case, str) else f"record {i}"
        if err.validator == "required":  # the missing field is named in the message, not in the path
            missing = err.message.split("'")[1] if err.message.count("'") >= 2 else err.message
            raise error(f"{where}: {label}: field {_field([*err.absolute_path, missing])!r} is missing")
        raise error(f"{where}: {label}: field {_field(err.absolute_path)!r}: {err.message}")
