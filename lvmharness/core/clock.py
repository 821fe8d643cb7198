"""UTC time stamps as the project writes them (ISO 8601 with the offset). Standard library only."""

from __future__ import annotations

import datetime as _dt


def utc_now() -> str:
    """Now in UTC, to the second: ``2026-11-30T07:36:31+00:00`` (records, env files)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def utc_now_us() -> str:
    """Now in UTC, to the microsecond: orders entries appended within one second (the history index)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="microseconds")
