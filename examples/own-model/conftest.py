"""Importing the model module registers its aliases (``tinyconv``) before pytest parses ``--lvm-models``."""

import mymodels  # noqa: F401
