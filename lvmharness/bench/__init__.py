"""The pytest plugin: ``--lvm-*`` options, the ``lvm`` fixture, the session state. The only part of lvmharness
that imports pytest; loaded through the ``pytest11`` entry point, never imported by the rest of the library.

A bench needs only the fixture's type: ``from lvmharness.bench import Lvm``.
"""

from lvmharness.bench.fixture import Lvm
from lvmharness.bench.session import LoadedModel, LvmSession

__all__ = ["LoadedModel", "Lvm", "LvmSession"]
