"""What one page server holds between requests: its settings, its locks and what is running now."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flask import current_app

from lvmharness.models.aliases import ModelSpec

EXTENSION = "lvmharness_viz"  # the key of the page's state in ``app.extensions``


@dataclass
class PageState:
    """``generate=False`` serves saved graphs only (no torch at all); ``allow_measure`` lets the page time a model
    per layer on this machine's CPU; ``served`` are custom models resolved at server start."""

    root: Path
    generate: bool
    allow_measure: bool
    served: Mapping[str, ModelSpec]
    lock: threading.Lock = field(default_factory=threading.Lock)  # one generation or prediction at a time
    measure_lock: threading.Lock = field(default_factory=threading.Lock)
    running: dict[str, dict[str, Any]] = field(default_factory=dict)  # generated or measured now, for every page
    predictions: dict[tuple[Any, ...], dict[str, Any]] = field(default_factory=dict)  # fake-tensor runs repeat

    @property
    def can_measure(self) -> bool:
        return self.allow_measure and self.generate

    def status_list(self) -> list[dict[str, Any]]:
        now = time.time()
        return [{"name": k, "kind": v["kind"], "seconds": round(now - v["since"], 1)}
                for k, v in list(self.running.items())]

    @contextmanager
    def running_as(self, name: str, kind: str) -> Iterator[None]:
        """Listed under ``running`` (``/api/status``) while the block runs."""
        self.running[name] = {"kind": kind, "since": time.time()}
        try:
            yield
        finally:
            self.running.pop(name, None)


def page_state() -> PageState:
    """The state of the app serving the current request."""
    state = current_app.extensions[EXTENSION]
    assert isinstance(state, PageState)
    return state
