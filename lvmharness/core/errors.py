"""Errors a user can fix, worded for whichever front end they came through. Torch-free.

A setting is named in a message as ``{opt:FIELD}``, FIELD being the library's own name for it (a ``TrainConfig``
field such as ``batch_size``). Each front end renders the message with its own spelling of the option:
``train.py`` says ``--batch_size``, a pytest plugin can say ``--lvm-batch-sizes``. ``str(error)`` renders the
command-line spelling ``--FIELD``.
"""

from __future__ import annotations

import re
from collections.abc import Callable

_OPTION = re.compile(r"\{opt:([A-Za-z_][A-Za-z0-9_]*)\}")


def cli_option(field: str) -> str:
    """``train.py``'s spelling: the field name as a long option."""
    return f"--{field}"


class UserError(Exception):
    """A mistake in the input; ``field`` is the setting at fault (None when it is not one setting)."""

    def __init__(self, template: str, *, field: str | None = None) -> None:
        super().__init__(template)
        self.template = template
        self.field = field

    def render(self, option: Callable[[str], str] = cli_option) -> str:
        return _OPTION.sub(lambda m: option(m.group(1)), self.template)

    def __str__(self) -> str:
        return self.render()


class ConfigError(UserError, ValueError):
    """A setting out of its valid range, or settings that contradict each other."""


class BadValueError(UserError, ValueError):
    """A value that does not parse or lies outside its range; the message says what is valid."""
