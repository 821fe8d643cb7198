"""This repository's own tests: device-marked tests skip, with the reason, where the device is absent.

The bench glue (options, the case matrix, the ``lvm`` fixture) is the installed lvmharness pytest plugin
(``lvmharness/bench/``), not this file.
"""

from __future__ import annotations

import pytest

# pytest's own fixture for testing a plugin in-process (tests/bench/test_plugin.py).
pytest_plugins = ["pytester"]


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    marked = {name for item in items for name in ("cuda", "mps") if item.get_closest_marker(name)}
    if not marked:
        return  # no device question to ask: torch stays unimported
    import torch

    backend = getattr(torch.backends, "mps", None)
    has = {"cuda": torch.cuda.is_available(), "mps": bool(backend is not None and backend.is_available())}
    for item in items:
        for name in marked:
            if item.get_closest_marker(name) and not has[name]:
                item.add_marker(pytest.mark.skip(reason=f"needs {name}, which this machine does not have"))
