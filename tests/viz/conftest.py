"""The page's Flask test client over the shared ``graphs`` folder (tests/conftest.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from viz.app import create_app


@pytest.fixture
def client(graphs: Path) -> Iterator[FlaskClient]:
    app = create_app(graphs)
    app.testing = True
    with app.test_client() as c:
        yield c
