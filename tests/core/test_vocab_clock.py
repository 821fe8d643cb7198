"""The dtype vocabulary and the UTC time stamps of core."""

from __future__ import annotations

import datetime as _dt
import re

from lvmharness.core.clock import utc_now
from lvmharness.core.vocab import DTYPE_NAMES, STORAGE_DTYPE_NAMES
from lvmharness.runtime.devices import DTYPES
from lvmharness.runtime.execution import DTYPE_MODES
from lvmharness.store.record_schema import record_schema


def test_dtype_names_are_one_vocabulary() -> None:
    # The CLI's choices, the schema's enum and the torch tables must name the same modes, in the same order.
    assert tuple(DTYPE_MODES) == DTYPE_NAMES
    assert tuple(DTYPES) == STORAGE_DTYPE_NAMES
    assert record_schema()["properties"]["dtype"]["enum"] == list(DTYPE_NAMES)
    assert all(DTYPE_MODES[name] == (DTYPES[name], None) for name in STORAGE_DTYPE_NAMES)


def test_utc_now_is_utc_to_the_second() -> None:
    before = _dt.datetime.now(_dt.UTC).replace(microsecond=0)
    text = utc_now()
    after = _dt.datetime.now(_dt.UTC)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00", text), text
    assert before <= _dt.datetime.fromisoformat(text) <= after
