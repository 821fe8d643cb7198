"""The architecture page: a Flask app over saved graph JSON files (``lvm graph`` writes them).

Reading a saved graph imports no torch: only ``lvmharness.formats.graph_format`` (validation) and
``lvmharness.models.aliases`` (the alias table). A graph that is not saved yet is generated on request on the meta
device through ``lvmharness.measure.graph`` — the one place this app calls into the library's torch side.

API (JSON unless noted):
  GET /api/models                       aliases (original four first) and the saved graphs with their totals
  GET /api/graph/<name>                 a saved graph; ?download=1 sends it as an attachment
  GET /api/graph/<name>/csv             the graph's node table as CSV
  GET /api/graph?model=M&img_size=N&batch_size=B&dtype=D
                                        the graph of a model at a size: served if saved, else generated and saved
  GET /api/status                       generations and measurements running now (the page says so)
  POST /api/measure  {model, img_size, batch_size, dtype}
                                        measure time per layer on this machine's CPU (only with allow_measure)
  GET /api/memory?model=M&img_size=N&batch_size=B&dtype=D&mode=train|inference&budget_gib=G
                                        the step's peak memory predicted on fake tensors (nothing allocated),
                                        its breakdown, bytes kept for backward per layer, largest batch for G GiB
A graph answer carries ``layer_times``: every measurement of that graph in ``<graphs>/layers/`` (``lvm layers
-o <graphs>`` writes them), so the page shows measured time beside MACs.
Errors: 400 bad input (with the allowed range or valid sizes), 404 unknown model (with close matches) or
graph, 422 malformed or wrong-version graph file (with the reason). Never a 500 for bad input. A bad file in the
folder (not JSON, nested too deep, a FIFO, too large) only ever affects itself: 422 when asked for by name, listed
under ``unreadable`` with the reason, never a failed listing.
"""

from __future__ import annotations

import csv
import io
import json
import math
import re
import threading
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from flask import Flask, Response, jsonify, request, send_from_directory

from lvmharness.formats.graph_format import (
    MAX_FILE_BYTES,
    GraphFormatError,
    canonical_model,
    graph_name,
    read_json_file,
    validate_graph,
    validate_layers,
    walk,
)
from lvmharness.models import aliases
from lvmharness.store.results import atomic_write_json

# Bounds of what the page generates: sane for a browser tree and seconds of meta-device analysis.
IMG_SIZE_RANGE = (16, 1024)
BATCH_SIZE_RANGE = (1, 1024)
DTYPES = ("fp32", "bf16", "fp16")
MAX_GRAPH_BYTES = MAX_FILE_BYTES
LAYERS_DIR = "layers"
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,149}")
STATIC = Path(__file__).parent / "static"
CSV_COLUMNS = ("path", "name", "type", "kind", "depth", "calls", "output_shapes", "params_own", "params",
               "macs_own", "macs", "activation_bytes")


class ApiError(Exception):
    def __init__(self, status: int, message: str, **extra: Any) -> None:
        super().__init__(message)
        self.status, self.message, self.extra = status, message, extra


def create_app(graphs_dir: Path | str, *, generate: bool = True, allow_measure: bool = False,
               served_models: Mapping[str, aliases.ModelSpec] | None = None) -> Flask:
    """``generate=False`` serves saved graphs only (no torch at all). ``allow_measure`` lets the page's "measure"
    button time a model per layer on this machine's CPU (seconds to a minute of full CPU use per click).

    ``served_models``: custom models (``package.module:callable``) named by whoever started the server, already
    resolved. A module path that arrives in a request is never imported: besides these, a request may name only an
    alias, a registered or published model, a timm name or ``torchvision:NAME``."""
    served = dict(served_models or {})
    root = Path(graphs_dir).resolve()
    if generate:  # serving saved graphs only creates nothing
        root.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, static_folder=None)
    app.config["GRAPHS_DIR"] = root
    lock = threading.Lock()
    measure_lock = threading.Lock()
    running: dict[str, dict[str, Any]] = {}  # what is being generated or measured now, for every page to show

    def graph_path(name: str) -> Path:
        if not _NAME.fullmatch(name) or ".." in name:
            raise ApiError(400, "graph names are letters, digits, '_', '-' and '.', with no '..' or separators")
        path = (root / f"{name}.json").resolve()
        # Links (or anything else) that lead out of the graphs folder are treated as absent.
        if not path.is_relative_to(root) or not path.exists():
            raise ApiError(404, f"no saved graph named {name!r}")
        return path

    def read_graph(path: Path) -> dict[str, Any]:
        """The validated graph of one file; GraphFormatError says what is wrong with it."""
        doc = read_json_file(path, MAX_GRAPH_BYTES)
        validate_graph(doc)
        return dict(doc)

    def load(path: Path) -> dict[str, Any]:
        try:
            return read_graph(path)
        except GraphFormatError as exc:
            raise ApiError(422, f"graph file {path.name} is not a usable graph: {exc}") from None

    def measurements(name: str) -> list[dict[str, Any]]:
        """The readable layer-time files of one graph (unreadable ones are skipped: the graph still shows)."""
        folder = root / LAYERS_DIR
        out = []
        for path in sorted(folder.glob(f"{glob_escape(name)}-*.json")) if folder.is_dir() else []:
            try:
                if not path.resolve().is_relative_to(root):
                    continue
                doc = read_json_file(path, MAX_GRAPH_BYTES)
                validate_layers(doc)
            except (GraphFormatError, OSError):
                continue
            out.append({**doc, "file": path.name})
        # CPU inference first: what the page can measure itself and what most users read.
        out.sort(key=lambda d: (d.get("mode") != "inference", d.get("device") != "cpu", d["file"]))
        return out

    def with_times(doc: dict[str, Any], name: str) -> dict[str, Any]:
        return {**doc, "name": name, "layer_times": measurements(name)}

    def saved() -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
        out, bad = [], []
        for path in sorted(root.glob("*.json")):
            try:
                if not path.resolve().is_relative_to(root):
                    continue  # a link out of the folder is nobody's graph
                doc = read_graph(path)
            except (GraphFormatError, OSError) as exc:
                bad.append({"name": path.stem, "error": str(exc)[:300]})
                continue
            out.append({
                "name": path.stem, "model": doc["model"], "alias": doc.get("alias"), "img_size": doc["img_size"],
                "batch_size": doc["batch_size"], "dtype": doc["dtype"], "totals": doc["totals"],
            })
        return out, bad

    @app.errorhandler(ApiError)
    def api_error(err: ApiError) -> tuple[Response, int]:
        return jsonify({"error": err.message, **err.extra}), err.status

    @app.errorhandler(404)
    def not_found(_: Exception) -> tuple[Response, int]:
        return jsonify({"error": f"no such page or API route: {request.path[:200]}"}), 404

    @app.errorhandler(405)
    def bad_method(_: Exception) -> tuple[Response, int]:
        return jsonify({"error": f"method {request.method} is not allowed here"}), 405

    @app.errorhandler(Exception)
    def any_error(err: Exception) -> tuple[Response, int]:
        """Every other failure is JSON too (the page shows the message), never Flask's HTML page."""
        from werkzeug.exceptions import HTTPException

        if isinstance(err, HTTPException):
            return jsonify({"error": f"{err.name}: {err.description}"}), err.code or 500
        app.logger.exception("unexpected error on %s", request.path)
        first = str(err).strip().splitlines()[0][:300] if str(err).strip() else ""
        return jsonify({"error": f"internal error: {type(err).__name__}: {first}"}), 500

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
        graphs, unreadable = saved()
        specs = sorted([*aliases.registered(), *served.values()],
                       key=lambda s: (s.alias not in aliases.ORIGINAL_ALIASES, s.family, s.alias))
        return jsonify({
            "aliases": [
                {"alias": s.alias, "timm_name": s.timm_name, "family": s.family, "img_size": s.default_img_size,
                 "note": s.note}
                for s in specs
            ],
            "graphs": graphs,
            "unreadable": unreadable,
            "limits": {"img_size": list(IMG_SIZE_RANGE), "batch_size": list(BATCH_SIZE_RANGE),
                       "dtype": list(DTYPES)},
            "generate": generate,
            "measure": allow_measure and generate,
            "running": status_list(),
        })

    def status_list() -> list[dict[str, Any]]:
        now = time.time()
        return [{"name": k, "kind": v["kind"], "seconds": round(now - v["since"], 1)} for k, v in running.items()]

    @app.get("/api/status")
    def status() -> Response:
        return jsonify({"running": status_list()})

    @app.get("/api/graph/<name>")
    def graph(name: str) -> Response:
        doc = with_times(load(graph_path(name)), name)
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

    def requested() -> tuple[str, int, int, str]:
        """(model, img_size, batch, dtype) from the query string or a JSON body, validated."""
        body = request.get_json(silent=True) if request.method == "POST" else None
        src: dict[str, Any] = body if isinstance(body, dict) else dict(request.args)
        model = str(src.get("model", ""))
        plain = _MODEL.fullmatch(model) or (
            model.startswith(aliases.TORCHVISION_PREFIX) and _MODEL.fullmatch(model[len(aliases.TORCHVISION_PREFIX):]))
        if model not in served and not plain:
            raise ApiError(400, "model must be an alias, a timm name or torchvision:NAME (letters, digits, '_', '-', "
                                "'.'); custom models (package.module:callable) are served only when named at server "
                                "start: model_viz.py --models mypkg.models:build", served=sorted(served))
        spec = served.get(model) or aliases.lookup(model)
        default_size = spec.default_img_size if spec else 224
        img_size = _int_value("img_size", src.get("img_size"), default_size, IMG_SIZE_RANGE)
        batch = _int_value("batch_size", src.get("batch_size"), 1, BATCH_SIZE_RANGE)
        dtype = str(src.get("dtype", "fp32"))
        if dtype not in DTYPES:
            raise ApiError(400, f"dtype must be one of {', '.join(DTYPES)}", allowed=list(DTYPES))
        return model, img_size, batch, dtype

    @app.get("/api/graph")
    def graph_for() -> Response:
        model, img_size, batch, dtype = requested()
        name = graph_name(canonical_model(model), img_size, batch, dtype)
        path = root / f"{name}.json"
        if path.exists():
            return jsonify(with_times(matching(load(graph_path(name)), name), name))
        if not generate:
            raise ApiError(404, f"no saved graph {name!r} and generation is off")
        with lock:
            if not path.exists():
                running[name] = {"kind": "graph", "since": time.time()}
                try:
                    doc = _generate(model, img_size, batch, dtype)
                    try:
                        atomic_write_json(path, doc)
                    except OSError as exc:
                        raise ApiError(503, f"generated the graph of {model} but cannot save it in {root} "
                                            f"({exc.strerror or type(exc).__name__}); start the page with a "
                                            "writable --graphs folder") from None
                finally:
                    running.pop(name, None)
        return jsonify({**with_times(matching(load(graph_path(name)), name), name), "generated": True})

    def matching(doc: dict[str, Any], name: str) -> dict[str, Any]:
        """A saved file answers a request only if it holds what the request asked for (a file copied or renamed
        under another graph's name would otherwise be served as that graph)."""
        held = graph_name(canonical_model(str(doc.get("alias") or doc["model"])), doc["img_size"],
                          doc["batch_size"], doc["dtype"])
        if held != name and graph_name(canonical_model(str(doc["model"])), doc["img_size"], doc["batch_size"],
                                       doc["dtype"]) != name:
            raise ApiError(409, f"the saved file {name}.json holds {doc['model']} at {doc['img_size']} px, batch "
                                f"{doc['batch_size']}, {doc['dtype']}, not what was asked for; remove or rename it "
                                f"(its contents say {held}.json)")
        return doc

    @app.post("/api/measure")
    def measure() -> Response:
        if not (allow_measure and generate):
            raise ApiError(403, "measuring is off: start the page with --allow-measure to time models on this CPU")
        if not request.is_json:
            raise ApiError(415, "send the model as a JSON body (Content-Type: application/json)")
        model, img_size, batch, dtype = requested()
        if dtype != "fp32":
            raise ApiError(400, "the page measures fp32 on the CPU; use `lvm layers --dtype` for other dtypes")
        name = graph_name(canonical_model(model), img_size, batch, dtype)
        if not measure_lock.acquire(blocking=False):
            busy = ", ".join(k for k, v in running.items() if v["kind"] == "measure")
            raise ApiError(409, f"a measurement is running ({busy}); try again when it is done",
                           running=status_list())
        try:
            running[name] = {"kind": "measure", "since": time.time()}
            _measure(model, img_size, batch, dtype, root)
        finally:
            running.pop(name, None)
            measure_lock.release()
        return jsonify(with_times(load(graph_path(name)), name))

    predictions: dict[tuple[Any, ...], dict[str, Any]] = {}  # fake-tensor runs are deterministic: keep answers

    @app.get("/api/memory")
    def memory() -> Response:
        """The predicted peak of one step on fake tensors, its breakdown, the bytes each layer keeps for backward
        and, with ``budget_gib``, the largest batch whose peak fits."""
        if not generate:
            raise ApiError(404, "memory prediction runs the model on fake tensors; generation is off")
        model, img_size, batch, dtype = requested()
        mode = str(request.args.get("mode", "train"))
        if mode not in MEMORY_MODES:
            raise ApiError(400, f"mode must be one of {', '.join(MEMORY_MODES)}", allowed=list(MEMORY_MODES))
        budget = _float_value("budget_gib", request.args.get("budget_gib"), BUDGET_GIB_RANGE)
        key = (model, img_size, batch, dtype, mode, budget)
        if key not in predictions:
            name = f"memory:{model}-{img_size}-b{batch}-{dtype}-{mode}"
            with lock:
                running[name] = {"kind": "memory", "since": time.time()}
                try:
                    predictions[key] = _predict_memory(model, img_size, batch, dtype, mode, budget)
                finally:
                    running.pop(name, None)
        return jsonify(predictions[key])

    return app


MEMORY_MODES = ("train", "inference")
BUDGET_GIB_RANGE = (0.001, 4096.0)


def _float_value(name: str, raw: Any, bounds: tuple[float, float]) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw) if str(raw).isascii() else math.nan  # float() also reads '٥' (Arabic-Indic five)
    except ValueError:
        raise ApiError(400, f"{name} must be a number of GiB in {bounds[0]}..{bounds[1]}, got {str(raw)[:40]!r}",
                       allowed=list(bounds)) from None
    if not bounds[0] <= value <= bounds[1]:
        raise ApiError(400, f"{name} {value} is outside the allowed range {bounds[0]}..{bounds[1]}",
                       allowed=list(bounds))
    return value


def _predict_memory(model: str, img_size: int, batch: int, dtype: str, mode: str,
                    budget_gib: float | None) -> dict[str, Any]:
    """Predict on fake tensors (CPU semantics); imports torch."""
    from lvmharness.measure.batch_search import predicted_max_batch
    from lvmharness.measure.prediction import predict_saved_for_backward, predict_step
    from lvmharness.measure.step import StepConfig
    from lvmharness.models.build import InvalidInputSizeError, UnknownModelError
    from lvmharness.runtime.devices import DeviceUnavailableError

    try:
        cfg = StepConfig(model, batch_size=batch, img_size=img_size, mode=mode, dtype=dtype)
        pred = predict_step(cfg)
        saved = predict_saved_for_backward(cfg)
        found = predicted_max_batch(cfg, int(budget_gib * 2**30)) if budget_gib is not None else None
    except UnknownModelError as exc:
        raise ApiError(404, str(exc), matches=exc.matches) from None
    except InvalidInputSizeError as exc:
        raise ApiError(400, str(exc), valid=exc.valid) from None
    except DeviceUnavailableError as exc:
        raise ApiError(400, str(exc)) from None
    out: dict[str, Any] = {
        "model": model, "img_size": img_size, "batch_size": batch, "dtype": dtype, "mode": mode, "device": "cpu",
        "quantity": cfg.quantity(), "predicted_peak_bytes": pred.peak_bytes, "breakdown_bytes": pred.breakdown,
        "peak_phase": pred.peak_phase, "prediction_s": round(pred.wall_s, 3),
        "saved_for_backward_bytes": dict(sorted(saved.items(), key=lambda kv: -kv[1])),
    }
    if found is not None:
        out.update(budget_gib=budget_gib, predicted_max_batch=found["predicted_max_batch"],
                   predicted_peak_at_max_bytes=found.get("predicted_peak_at_max_bytes"),
                   predicted_peak_at_next_bytes=found.get("predicted_peak_at_next_bytes"))
    return out


def glob_escape(name: str) -> str:
    """A validated graph name as a literal glob pattern (names may hold '[' only if the regex allowed it)."""
    import glob

    return glob.escape(name)


def _int_value(name: str, raw: Any, default: int, bounds: tuple[int, int]) -> int:
    if raw is None or raw == "":
        return default
    problem = ApiError(400, f"{name} must be an integer in {bounds[0]}..{bounds[1]}, got {str(raw)[:40]!r}",
                       allowed=list(bounds))
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise problem
    if isinstance(raw, str) and not re.fullmatch(r"[0-9]{1,9}", raw):
        raise problem  # ASCII digits only: int() also reads '٥٦' (Arabic-Indic) and '1_000'
    value = int(raw)
    if not bounds[0] <= value <= bounds[1]:
        raise ApiError(400, f"{name} {value} is outside the allowed range {bounds[0]}..{bounds[1]}",
                       allowed=list(bounds))
    return value


@contextmanager
def _model_errors_as_api_errors(model: str) -> Iterator[None]:
    """The HTTP answer to a model that cannot be built or counted, for every path that builds one (imports torch)."""
    from lvmharness.measure.flops import FlopCountError
    from lvmharness.models.build import InvalidInputSizeError, ModelError, UnknownModelError

    try:
        yield
    except UnknownModelError as exc:
        raise ApiError(404, str(exc), matches=exc.matches) from None
    except InvalidInputSizeError as exc:
        raise ApiError(400, str(exc), valid=exc.valid) from None
    except ModelError as exc:  # e.g. an unknown torchvision:NAME, or a served factory that raised
        raise ApiError(400, str(exc)) from None
    except FlopCountError as exc:
        raise ApiError(422, f"{model} cannot be analysed exactly: {exc}") from None


def _measure(model: str, img_size: int, batch: int, dtype: str, root: Path) -> None:
    """Time per layer on the CPU and save it (and the graph) where the page finds it; imports torch."""
    from lvmharness.measure.layers import measure_from_spec, save_for_page

    with _model_errors_as_api_errors(model):
        doc = measure_from_spec(model, img_size=img_size, batch_size=batch, device="cpu", dtype=dtype, steps=3,
                                warmup=1)
    save_for_page(doc, root)


def _generate(model: str, img_size: int, batch: int, dtype: str) -> dict[str, Any]:
    """Build a graph on the meta device; the only path that imports torch."""
    from lvmharness.measure.graph import build_graph

    with _model_errors_as_api_errors(model):
        doc = build_graph(model, img_size=img_size, batch_size=batch, dtype=dtype)
    validate_graph(doc)
    return doc
