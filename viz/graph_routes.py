"""The graphs API: the listing, a saved graph by name (JSON or CSV), and the graph of a model at a size."""

from __future__ import annotations

import csv
import io
import json

from flask import Blueprint, Response, jsonify, request

from lvmharness.core.fileio import atomic_write_json
from lvmharness.formats.graph_format import walk
from lvmharness.models import aliases
from lvmharness.models.aliases import canonical_model, graph_name

from . import folder, work
from .errors import ApiError
from .params import BATCH_SIZE_RANGE, DTYPES, IMG_SIZE_RANGE, requested
from .state import page_state

CSV_COLUMNS = ("path", "name", "type", "kind", "depth", "calls", "output_shapes", "params_own", "params",
               "macs_own", "macs", "activation_bytes")

graphs = Blueprint("graphs", __name__)


@graphs.get("/api/models")
def models() -> Response:
    state = page_state()
    saved, unreadable = folder.saved(state.root)
    specs = sorted([*aliases.registered(), *state.served.values()],
                   key=lambda s: (s.alias not in aliases.ORIGINAL_ALIASES, s.family, s.alias))
    return jsonify({
        "aliases": [
            {"alias": s.alias, "timm_name": s.timm_name, "family": s.family, "img_size": s.default_img_size,
             "note": s.note}
            for s in specs
        ],
        "graphs": saved,
        "unreadable": unreadable,
        "limits": {"img_size": list(IMG_SIZE_RANGE), "batch_size": list(BATCH_SIZE_RANGE), "dtype": list(DTYPES)},
        "generate": state.generate,
        "measure": state.can_measure,
        "running": state.status_list(),
    })


@graphs.get("/api/graph/<name>")
def graph(name: str) -> Response:
    root = page_state().root
    resp = jsonify(folder.with_times(root, folder.load(folder.graph_path(root, name)), name))
    if request.args.get("download"):
        resp.headers["Content-Disposition"] = f'attachment; filename="{name}.json"'
    return resp


@graphs.get("/api/graph/<name>/csv")
def graph_csv(name: str) -> Response:
    doc = folder.load(folder.graph_path(page_state().root, name))
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(CSV_COLUMNS)
    for node in walk(doc["root"]):
        row = [node.get(c) for c in CSV_COLUMNS]
        row[CSV_COLUMNS.index("output_shapes")] = json.dumps(node.get("output_shapes"))
        writer.writerow(row)
    return Response(buf.getvalue(), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


@graphs.get("/api/graph")
def graph_for() -> Response:
    """The graph of a model at a size: served if saved, else generated on the meta device and saved."""
    state = page_state()
    want = requested(state.served)
    name = graph_name(canonical_model(want.model), want.img_size, want.batch, want.dtype)
    path = state.root / f"{name}.json"
    if path.exists():
        doc = folder.matching(folder.load(folder.graph_path(state.root, name)), name)
        return jsonify(folder.with_times(state.root, doc, name))
    if not state.generate:
        raise ApiError(404, f"no saved graph {name!r} and generation is off")
    with state.lock:
        if not path.exists():
            with state.running_as(name, "graph"):
                doc = work.generate(want)
                try:
                    atomic_write_json(path, doc)
                except OSError as exc:
                    raise ApiError(503, f"generated the graph of {want.model} but cannot save it in {state.root} "
                                        f"({exc.strerror or type(exc).__name__}); start the page with a "
                                        "writable --graphs folder") from None
    doc = folder.matching(folder.load(folder.graph_path(state.root, name)), name)
    return jsonify({**folder.with_times(state.root, doc, name), "generated": True})
