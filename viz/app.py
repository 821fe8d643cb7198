"""The architecture page: a Flask app over saved graph JSON files (``lvm graph`` writes them).

Reading a saved graph imports no torch: only ``lvmharness.graph_format`` (validation) and ``lvmharness.aliases``
(the alias table). A graph that is not saved yet is generated on request on the meta device through
``lvmharness.graph`` — the one place this app calls into the library's torch side.

API (JSON unless noted):
  GET /api/models                       aliases (seed first) and the saved graphs with their totals
  GET /api/graph/<name>                 a saved graph; ?download=1 sends it as an attachment
  GET /api/graph/<name>/csv             the graph's node table as CSV
  GET /api/graph?model=M&img_size=N&batch_size=B&dtype=D
                                        the graph of a model at a size: served if saved, else generated and saved
Errors: 400 bad input (with the allowed range or valid sizes), 404 unknown model (with close matches) or
graph, 422 malformed or wrong-version graph file (with the reason). Never a 500 for bad input.
"""

from __future__ import annotations

import csv
import io
import json
import re
import threading
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory

from lvmharness import aliases
from lvmharness.graph_format import GraphFormatError, validate_graph, walk
from lvmharness.results import atomic_write_json

# Bounds of what the page generates: sane for a browser tree and seconds of meta-device analysis.
IMG_SIZE_RANGE = (16, 1024)
BATCH_SIZE_RANGE = (1, 1024)
DTYPES = ("fp32", "bf16", "fp16")
MAX_GRAPH_BYTES = 64 * 1024 * 1024
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,149}")
STATIC = Path(__file__).parent / "static"
CSV_COLUMNS = ("path", "name", "type", "kind", "depth", "calls", "output_shapes", "params_own", "params",
               "macs_own", "macs", "activation_bytes")


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def graph_name(model: str, img_size: int, batch_size: int, dtype: str) -> str:
    """File stem of a saved graph: ``vit_base_patch16_224-224-b1-fp32``."""
    return f"{model}-{img_size}-b{batch_size}-{dtype}"


def canonical_model(model: str) -> str:
    """Aliases without overrides share their timm model's graphs (``vit`` and ``vit_base`` are one file)."""
    spec = aliases.lookup(model)
    if spec is not None and not spec.overrides:
        return spec.timm_name
    return model


def _int_arg(name: str, default: int, bounds: tuple[int, int]) -> int:
    raw = request.args.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer in {bounds[0]}..{bounds[1]}, got {raw[:40]!r}",
                       allowed=list(bounds)) from None
    if not bounds[0] <= value <= bounds[1]:
        raise ApiError(400, f"{name} {value} is outside the allowed range {bounds[0]}..{bounds[1]}",
                       allowed=list(bounds))
    return value


def create_app(graphs_dir: Path | str, *, generate: bool = True) -> Flask:
    """``generate=False`` serves saved graphs only (no torch at all)."""
    root = Path(graphs_dir).resolve()
    root.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, static_folder=None)
    app.config["GRAPHS_DIR"] = root
    lock = threading.Lock()

    def graph_path(name: str) -> Path:
        if not _NAME.fullmatch(name) or ".." in name:
            raise ApiError(400, "graph names are letters, digits, '_', '-' and '.', with no '..' or separators")
        path = (root / f"{name}.json").resolve()
        # Links (or anything else) that lead out of the graphs folder are treated as absent.
        if not path.is_relative_to(root) or not path.is_file():
            raise ApiError(404, f"no saved graph named {name!r}")
        return path

    def load(path: Path) -> dict[str, Any]:
        if path.stat().st_size > MAX_GRAPH_BYTES:
            raise ApiError(422, f"graph file {path.name} is larger than {MAX_GRAPH_BYTES} bytes")
        try:
            doc = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ApiError(422, f"graph file {path.name} is not valid JSON: {exc}") from None
        try:
            validate_graph(doc)
        except GraphFormatError as exc:
            raise ApiError(422, f"graph file {path.name} is not a usable graph: {exc}") from None
        return dict(doc)

    def saved() -> list[dict[str, Any]]:
        out = []
        for path in sorted(root.glob("*.json")):
            try:
                resolved = path.resolve()
                if not resolved.is_relative_to(root) or resolved.stat().st_size > MAX_GRAPH_BYTES:
                    continue
                doc = json.loads(resolved.read_text(encoding="utf-8"))
                validate_graph(doc)
            except (OSError, ValueError):
                continue  # unreadable files are listed by nobody; asking for one by name gives the reason
            out.append({
                "name": path.stem, "model": doc["model"], "alias": doc.get("alias"), "img_size": doc["img_size"],
                "batch_size": doc["batch_size"], "dtype": doc["dtype"], "totals": doc["totals"],
            })
        return out

    @app.errorhandler(ApiError)
    def api_error(err: ApiError) -> tuple[Response, int]:
        return jsonify({"error": err.message, **err.extra}), err.status

    @app.errorhandler(404)
    def not_found(_: Exception) -> tuple[Response, int]:
        return jsonify({"error": f"no such page or API route: {request.path[:200]}"}), 404

    @app.errorhandler(405)
    def bad_method(_: Exception) -> tuple[Response, int]:
        return jsonify({"error": f"method {request.method} is not allowed here"}), 405

    @app.after_request
    def headers(resp: Response) -> Response:
        resp.headers["Content-Security-Policy"] = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'"
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"
        return resp

    @app.get("/")
    def index() -> Response:
        return send_from_directory(STATIC, "index.html")

    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)

    @app.get("/static/<path:filename>")
    def static_files(filename: str) -> Response:
        return send_from_directory(STATIC, filename)  # safe_join: no escaping the static folder

    @app.get("/api/models")
    def models() -> Response:
        specs = sorted(aliases.registered(), key=lambda s: (s.alias not in aliases.SEED_ALIASES, s.family, s.alias))
        return jsonify({
            "aliases": [
                {"alias": s.alias, "timm_name": s.timm_name, "family": s.family, "img_size": s.default_img_size,
                 "note": s.note}
                for s in specs
            ],
            "graphs": saved(),
            "limits": {"img_size": list(IMG_SIZE_RANGE), "batch_size": list(BATCH_SIZE_RANGE),
                       "dtype": list(DTYPES)},
            "generate": generate,
        })

    @app.get("/api/graph/<name>")
    def graph(name: str) -> Response:
        doc = load(graph_path(name))
        resp = jsonify(doc)
        if request.args.get("download"):
            resp.headers["Content-Disposition"] = f'attachment; filename="{name}.json"'
        return resp

    @app.get("/api/graph/<name>/csv")
    def graph_csv(name: str) -> Response:
        doc = load(graph_path(name))
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(CSV_COLUMNS)
        for node in walk(doc["root"]):
            row = [node.get(c) for c in CSV_COLUMNS]
            row[CSV_COLUMNS.index("output_shapes")] = json.dumps(node.get("output_shapes"))
            writer.writerow(row)
        return Response(buf.getvalue(), mimetype="text/csv",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})

    @app.get("/api/graph")
    def graph_for() -> Response:
        model = request.args.get("model", "")
        if not _MODEL.fullmatch(model):
            raise ApiError(400, "model must be an alias or timm name (letters, digits, '_', '-', '.')")
        img = request.args.get("img_size")
        spec = aliases.lookup(model)
        default_size = spec.default_img_size if spec else 224
        img_size = _int_arg("img_size", default_size, IMG_SIZE_RANGE) if img else default_size
        batch = _int_arg("batch_size", 1, BATCH_SIZE_RANGE)
        dtype = request.args.get("dtype", "fp32")
        if dtype not in DTYPES:
            raise ApiError(400, f"dtype must be one of {', '.join(DTYPES)}", allowed=list(DTYPES))
        name = graph_name(canonical_model(model), img_size, batch, dtype)
        path = root / f"{name}.json"
        if path.is_file():
            return jsonify({**load(graph_path(name)), "name": name})
        if not generate:
            raise ApiError(404, f"no saved graph {name!r} and generation is off")
        with lock:
            if not path.is_file():
                doc = _generate(model, img_size, batch, dtype)
                atomic_write_json(path, doc)
        return jsonify({**load(graph_path(name)), "name": name, "generated": True})

    return app


def _generate(model: str, img_size: int, batch: int, dtype: str) -> dict[str, Any]:
    """Build a graph on the meta device; the only path that imports torch."""
    from lvmharness.graph import build_graph
    from lvmharness.measure.flops import FlopCountError
    from lvmharness.models import InvalidInputSizeError, UnknownModelError

    try:
        doc = build_graph(model, img_size=img_size, batch_size=batch, dtype=dtype)
    except UnknownModelError as exc:
        raise ApiError(404, str(exc), matches=exc.matches) from None
    except InvalidInputSizeError as exc:
        raise ApiError(400, str(exc), valid=exc.valid) from None
    except FlopCountError as exc:
        raise ApiError(422, f"{model} cannot be analysed exactly: {exc}") from None
    validate_graph(doc)
    return doc
