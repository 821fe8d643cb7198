"""Run ids: start-ordered, unique, and safe to use as one folder name inside the results folder."""

from __future__ import annotations

import argparse
import datetime as _dt
import re
import secrets

from lvmharness.core.errors import UserError

_RUN_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")
_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_ONE_MS = _dt.timedelta(milliseconds=1)
_last_run_ms = 0


class RunIdError(UserError, ValueError):
    """A run id that is not one plain folder name; the message says what is valid, with examples."""


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


def validate_run_id(run_id: str) -> str:
    """A run id names a folder inside the results folder and nothing else: letters, digits, ``.``, ``_``, ``-``;
    no ``..`` (so never a parent), no ``/`` (so never absolute or nested). Returns it unchanged, or raises
    RunIdError saying what is valid."""
    if not _RUN_ID_RE.fullmatch(run_id) or ".." in run_id or run_id == ".":
        raise RunIdError(
            f"run id {run_id!r} is not valid: use 1-200 letters, digits, '.', '_' or '-', without '..' "
            "(it names one folder inside the results folder), e.g. nightly-2026-11-30 or 20261130T073631.042Z-f575a4"
        )
    return run_id


def run_id_arg(text: str) -> str:
    """``validate_run_id`` as an argparse ``type=``: the message reaches the user as written."""
    try:
        return validate_run_id(text)
    except RunIdError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
