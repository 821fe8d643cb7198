"""The architecture page's API through Flask's test client, bad input included."""

from __future__ import annotations

import csv
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from flask.testing import FlaskClient

from lvmharness.measure.graph import build_graph
from lvmharness.models.aliases import canonical_model
from viz.app import create_app

ROOT = Path(__file__).resolve().parents[2]


def test_models_lists_aliases_seed_first_and_saved_graphs(client: FlaskClient) -> None:
    data = client.get("/api/models").get_json()
    assert [a["alias"] for a in data["aliases"][:4]] == ["deit", "resnet", "swin", "vit"]
    (saved,) = data["graphs"]
    assert saved["name"] == "smoke_vit-32-b1-fp32" and saved["totals"]["params"] == 178_600
    assert data["limits"]["img_size"] == [16, 1024]


def test_saved_graph_json_csv_and_download(client: FlaskClient) -> None:
    resp = client.get("/api/graph/smoke_vit-32-b1-fp32")
    assert resp.status_code == 200
    assert resp.get_json()["totals"]["macs"] == 2_005_760
    dl = client.get("/api/graph/smoke_vit-32-b1-fp32?download=1")
    assert "attachment" in dl.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(client.get("/api/graph/smoke_vit-32-b1-fp32/csv").get_data(as_text=True))))
    by_path = {r["path"]: r for r in rows}
    assert by_path["blocks.0.attn.qkv"]["type"] == "Linear"
    assert json.loads(by_path["blocks.0.attn"]["output_shapes"]) == [[1, 17, 64]]
    assert sum(int(r["macs_own"]) for r in rows) == 2_005_760


def test_a_new_size_is_generated_saved_and_then_served(client: FlaskClient, graphs: Path) -> None:
    first = client.get("/api/graph?model=smoke_swin&img_size=64&batch_size=2&dtype=bf16")
    assert first.status_code == 200, first.get_json()
    body = first.get_json()
    assert body["generated"] and body["img_size"] == 64 and body["batch_size"] == 2 and body["dtype"] == "bf16"
    assert (graphs / "smoke_swin-64-b2-bf16.json").is_file()
    again = client.get("/api/graph?model=smoke_swin&img_size=64&batch_size=2&dtype=bf16").get_json()
    assert "generated" not in again and again["totals"] == body["totals"]


def test_aliases_share_their_timm_models_graphs() -> None:
    assert canonical_model("vit") == canonical_model("vit_base") == "vit_base_patch16_224"
    assert canonical_model("smoke_vit") == "smoke_vit"  # has overrides: not the timm default


@pytest.mark.parametrize(
    "url",
    [
        "/api/graph/..",
        "/api/graph/%2e%2e",
        "/api/graph/..%5c..%5cwindows",
        "/api/graph/a%00b",
        "/api/graph/.hidden",
        "/api/graph/smoke_vit-32-b1-fp32..json",
    ],
)
def test_hostile_graph_names_are_400(client: FlaskClient, url: str) -> None:
    resp = client.get(url)
    assert resp.status_code == 400
    assert "graph names are" in resp.get_json()["error"]


@pytest.mark.parametrize(
    "url", ["/api/graph/..%2F..%2Fetc%2Fpasswd", "/api/graph//etc/passwd", "/api/graph/%2Fetc%2Fpasswd",
            "/api/graph/nope", "/static/../app.py", "/static/%2e%2e/app.py"],
)
def test_paths_out_of_the_folder_or_missing_are_404(client: FlaskClient, url: str) -> None:
    resp = client.get(url)
    assert resp.status_code == 404
    assert b"root:" not in resp.data and b"create_app" not in resp.data


def test_a_link_leading_out_of_the_graphs_folder_is_404(client: FlaskClient, graphs: Path, tmp_path: Path) -> None:
    outside = tmp_path / "secret.json"
    outside.write_text(json.dumps(build_graph("smoke_resnet", backward=False)))
    os.symlink(outside, graphs / "escape.json")
    assert client.get("/api/graph/escape").status_code == 404
    assert "escape" not in [g["name"] for g in client.get("/api/models").get_json()["graphs"]]


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ("{not json", "not valid JSON"),
        ('{"format": "lvmharness.graph", "version": 2}', "version 2 is not supported"),
        ('{"format": "netron"}', "'format' must be"),
        ("[1, 2, 3]", "JSON object"),
        ('{"format": "lvmharness.graph", "version": 1, "model": "x", "img_size": 1, "batch_size": 1, '
         '"dtype": "fp32", "totals": {"params": 1, "macs": 1}, "root": {"path": ""}}', "'name' must be str"),
    ],
)
def test_malformed_or_wrong_version_files_are_422(client: FlaskClient, graphs: Path, content: str, reason: str) -> None:
    (graphs / "bad.json").write_text(content)
    resp = client.get("/api/graph/bad")
    assert resp.status_code == 422
    assert reason in resp.get_json()["error"]
    assert client.get("/api/graph/bad/csv").status_code == 422
    assert client.get("/api/models").status_code == 200  # the listing skips it instead of failing


@pytest.mark.parametrize(
    ("query", "status", "message"),
    [
        ("model=smoke_vit&img_size=8", 400, "allowed range 16..1024"),
        ("model=smoke_vit&img_size=5000", 400, "allowed range 16..1024"),
        ("model=smoke_vit&img_size=abc", 400, "must be an integer"),
        ("model=smoke_vit&batch_size=0", 400, "allowed range 1..1024"),
        ("model=smoke_vit&batch_size=100000", 400, "allowed range 1..1024"),
        ("model=smoke_vit&dtype=int4", 400, "dtype must be one of"),
        ("model=smoke_vit&img_size=36", 400, "not a multiple of the patch size 8"),
        ("model=", 400, "model must be"),
        ("model=../../etc/passwd", 400, "model must be"),
        ("model=vitt", 404, "unknown model 'vitt'"),
    ],
)
def test_bad_graph_requests(client: FlaskClient, query: str, status: int, message: str) -> None:
    resp = client.get(f"/api/graph?{query}")
    assert resp.status_code == status
    assert message in resp.get_json()["error"]


def test_unknown_model_404_carries_close_matches(client: FlaskClient) -> None:
    body = client.get("/api/graph?model=swin_tinyy").get_json()
    assert "swin_tiny" in body["matches"]


def test_page_and_static_files_with_security_headers(client: FlaskClient) -> None:
    page = client.get("/")
    assert page.status_code == 200 and b'<script type="module" src="/static/main.js">' in page.data
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    # A browser runs a module script only when it comes with a JavaScript MIME type.
    for name in ("main.js", "format.js", "memory.js"):
        script = client.get(f"/static/{name}")
        assert script.status_code == 200 and script.mimetype == "text/javascript", name
    assert client.get("/static/style.css").mimetype == "text/css"
    assert client.post("/api/models").status_code == 405


def test_generation_can_be_turned_off(graphs: Path) -> None:
    client = create_app(graphs, generate=False).test_client()
    assert client.get("/api/graph?model=smoke_vit").status_code == 200  # saved: served
    resp = client.get("/api/graph?model=smoke_resnet")
    assert resp.status_code == 404 and "generation is off" in resp.get_json()["error"]


def test_reading_saved_graphs_imports_no_torch(graphs: Path) -> None:
    code = f"""
import sys
from viz.app import create_app
c = create_app({str(graphs)!r}).test_client()
assert c.get('/api/models').status_code == 200
assert c.get('/api/graph/smoke_vit-32-b1-fp32').status_code == 200
assert c.get('/api/graph?model=smoke_vit').status_code == 200
assert c.get('/api/graph/smoke_vit-32-b1-fp32/csv').status_code == 200
print('torch' in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"
