"""The page serves custom models only when named at server start; a module path in a request is never imported."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from lvmharness.models.build import resolve
from tests.models.test_sources import tiny_conv_counts
from viz.app import create_app

EVIL = "from pathlib import Path\nPath(__file__).with_name('IMPORTED').write_text('imported')\ndef run():\n    pass\n"


@pytest.fixture
def user_dir(user_modules: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (user_modules / "evilmod.py").write_text(EVIL)
    monkeypatch.chdir(user_modules)
    return user_modules


@pytest.mark.parametrize("model", ["os:system", "evilmod:run", "mymodels:build", "subprocess:getoutput"])
def test_a_module_path_in_a_request_is_refused_and_imports_nothing(user_dir: Path, model: str) -> None:
    before = set(sys.modules)
    client = create_app(user_dir / "graphs").test_client()
    resp = client.get("/api/graph", query_string={"model": model, "img_size": 32})
    assert resp.status_code == 400
    assert "named at server start" in resp.get_json()["error"]
    assert not (user_dir / "IMPORTED").exists() and "evilmod" not in sys.modules
    assert {m for m in set(sys.modules) - before if m.split(".")[0] in ("evilmod", "mymodels", "torch")} == set()


def test_a_model_named_at_server_start_is_served(user_dir: Path) -> None:
    served = {"mymodels:build": resolve("mymodels:build")}
    client = create_app(user_dir / "graphs", served_models=served).test_client()
    listed = client.get("/api/models").get_json()["aliases"]
    assert any(a["alias"] == "mymodels:build" for a in listed)
    resp = client.get("/api/graph", query_string={"model": "mymodels:build", "img_size": 32})
    assert resp.status_code == 200, resp.get_json()
    doc = resp.get_json()
    params, macs = tiny_conv_counts(32)
    assert (doc["name"], doc["totals"]["params"], doc["totals"]["macs"]) == ("mymodels.build-32-b1-fp32", params,
                                                                             macs)
    assert (user_dir / "graphs" / "mymodels.build-32-b1-fp32.json").is_file()
    # Served from the saved file the second time.
    assert client.get("/api/graph", query_string={"model": "mymodels:build", "img_size": 32}).status_code == 200


def test_torchvision_names_are_registry_lookups(user_dir: Path) -> None:
    client = create_app(user_dir / "graphs").test_client()
    resp = client.get("/api/graph", query_string={"model": "torchvision:nosuchnet", "img_size": 32})
    assert resp.status_code == 400
    assert "torchvision" in resp.get_json()["error"]
