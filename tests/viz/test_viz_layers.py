"""The architecture page with hostile files in its folder, and with measured time per layer."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from lvmharness.core.fileio import atomic_write_json
from lvmharness.formats.graph_format import MAX_GRAPH_DEPTH
from lvmharness.models.aliases import graph_name
from viz.app import create_app

GOOD = "smoke_vit-32-b1-fp32"


def _nested_graph_text(levels: int) -> str:
    """A graph whose module tree is a chain ``levels`` deep, written as text (json.dumps itself would recurse)."""
    node = ('{{"path": "{p}", "name": "m", "type": "Sequential", "kind": "module", "depth": {d}, "params_own": 0, '
            '"params": 0, "macs_own": 0, "macs": 0, "children": [')
    head = "".join(node.format(p="m" * min(i, 1), d=i) for i in range(levels))
    return ('{"format": "lvmharness.graph", "version": 1, "model": "deep", "img_size": 32, "batch_size": 1, '
            '"dtype": "fp32", "totals": {"params": 0, "macs": 0}, "root": ' + head + "]}" * levels + "}")


def _listing(client: FlaskClient) -> dict[str, Any]:
    resp = client.get("/api/models")
    assert resp.status_code == 200, resp.get_data(as_text=True)[:300]
    return dict(resp.get_json())


@pytest.mark.parametrize(("content", "reason"), [
    ("[" * 100_000 + "]" * 100_000, "nested too deep"),  # 100,000 levels: beyond the parser's recursion limit
    (_nested_graph_text(3_000), "nested too deep"),  # a well-formed graph 3,000 modules deep
    (_nested_graph_text(MAX_GRAPH_DEPTH + 2), f"deeper than {MAX_GRAPH_DEPTH} levels"),  # parses; refused
    ("\xff\xfe not text", "not UTF-8"),
])
def test_a_bad_file_only_affects_itself(client: FlaskClient, graphs: Path, content: str, reason: str) -> None:
    (graphs / "bad.json").write_bytes(content.encode("latin-1") if "\xff" in content else content.encode())
    listing = _listing(client)
    assert [g["name"] for g in listing["graphs"]] == [GOOD]  # the good graph is still listed
    (bad,) = listing["unreadable"]
    assert bad["name"] == "bad" and reason in bad["error"]
    resp = client.get("/api/graph/bad")
    assert resp.status_code == 422 and reason in resp.get_json()["error"]
    assert client.get(f"/api/graph/{GOOD}").status_code == 200
    assert client.get("/api/graph/bad/csv").status_code == 422


def test_a_graph_as_deep_as_allowed_is_served(client: FlaskClient, graphs: Path) -> None:
    (graphs / "deep.json").write_text(_nested_graph_text(MAX_GRAPH_DEPTH + 1))  # depths 0..MAX_GRAPH_DEPTH
    assert "deep" in [g["name"] for g in _listing(client)["graphs"]]
    doc = client.get("/api/graph/deep").get_json()
    depth, node = 0, doc["root"]
    while node["children"]:
        node, depth = node["children"][0], depth + 1
    assert depth == MAX_GRAPH_DEPTH
    assert client.get("/api/graph/deep/csv").status_code == 200


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this platform")
def test_a_fifo_named_json_does_not_hang_the_listing(graphs: Path) -> None:
    os.mkfifo(graphs / "x.json")
    answers: dict[str, Any] = {}

    def ask() -> None:  # in a thread of its own: a blocked read must fail the test, not hang it
        client = create_app(graphs).test_client()
        answers["models"] = client.get("/api/models")
        answers["graph"] = client.get("/api/graph/x")

    t = threading.Thread(target=ask, daemon=True)
    t.start()
    t.join(timeout=20)
    assert not t.is_alive(), "reading the folder blocked on a FIFO"
    assert answers["models"].status_code == 200
    assert answers["models"].get_json()["unreadable"] == [{"name": "x", "error": "not a regular file"}]
    assert answers["graph"].status_code == 422 and "not a regular file" in answers["graph"].get_json()["error"]


# --- measured time per layer on the page ----------------------------------------------------------------------------


def _layers_doc(model: str = "vit_tiny_patch16_224", alias: str = "smoke_vit") -> dict[str, Any]:
    nodes = [
        {"path": "", "name": model, "type": "VisionTransformer", "depth": 0, "parent": None, "ms": 2.0,
         "share_time": 1.0},
        {"path": "blocks", "name": "blocks", "type": "Sequential", "depth": 1, "parent": "", "ms": 1.5,
         "share_time": 0.75},
    ]
    return {"format": "lvmharness.layers", "version": 1, "model": model, "alias": alias, "img_size": 32,
            "batch_size": 1, "dtype": "fp32", "device": "cpu", "mode": "inference",
            "reference": {"p50_ms": 2.1}, "totals": {"children_ms": 1.9}, "nodes": nodes}


def test_a_graph_carries_its_measurements(client: FlaskClient, graphs: Path) -> None:
    (graphs / "layers").mkdir()
    atomic_write_json(graphs / "layers" / f"{GOOD}-cpu-inference.json", _layers_doc())
    (graphs / "layers" / f"{GOOD}-cuda_0-inference.json").write_text('{"format": "lvmharness.layers"')  # cut short
    assert graph_name("smoke_vit", 32, 1, "fp32") == GOOD
    doc = client.get(f"/api/graph/{GOOD}").get_json()
    (measured,) = doc["layer_times"]  # the damaged one is skipped; the graph still shows
    assert measured["device"] == "cpu" and measured["nodes"][1]["ms"] == 1.5
    by_query = client.get("/api/graph?model=smoke_vit&img_size=32").get_json()
    assert by_query["layer_times"][0]["file"] == f"{GOOD}-cpu-inference.json"
    assert [g["name"] for g in _listing(client)["graphs"]] == [GOOD]  # measurements are not graphs


def test_measure_is_off_unless_allowed(client: FlaskClient) -> None:
    resp = client.post("/api/measure", json={"model": "smoke_vit"})
    assert resp.status_code == 403 and "--allow-measure" in resp.get_json()["error"]
    assert client.get("/api/status").get_json() == {"running": []}


def test_measure_button_endpoint_times_the_model(graphs: Path) -> None:
    app = create_app(graphs, allow_measure=True)
    app.testing = True
    with app.test_client() as c:
        assert c.get("/api/models").get_json()["measure"] is True
        assert c.post("/api/measure", data={"model": "smoke_vit"}).status_code == 415  # a plain form post
        assert c.post("/api/measure", json={"model": "smoke_vit", "batch_size": 0}).status_code == 400
        assert c.post("/api/measure", json={"model": "smoke_vit", "img_size": True}).status_code == 400
        resp = c.post("/api/measure", json={"model": "smoke_vit", "img_size": 32})
        assert resp.status_code == 200, resp.get_data(as_text=True)[:500]
        doc = resp.get_json()
    (measured,) = doc["layer_times"]
    assert measured["device"] == "cpu" and measured["mode"] == "inference"
    paths = {n["path"] for n in measured["nodes"]}
    graph_paths = {n["path"] for n in _walk(doc["root"]) if n["kind"] == "module"}
    assert paths == graph_paths  # one measured row per module of the graph
    assert (graphs / "layers" / f"{GOOD}-cpu-inference.json").is_file()


def _walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield node
    for c in node["children"]:
        yield from _walk(c)


def test_saved_measurement_file_round_trips(graphs: Path) -> None:
    doc = _layers_doc()
    atomic_write_json(graphs / "layers" / "x.json", doc)
    assert json.loads((graphs / "layers" / "x.json").read_text()) == doc
