"""The graphs folder as the page reads it: graph files by name, their measurements, the listing. Torch-free.

A bad file (not JSON, nested too deep, a FIFO, too large) only ever affects itself: 422 when asked for by name,
listed under ``unreadable`` with the reason, never a failed listing. Links leading out of the folder are absent.
"""

from __future__ import annotations

import glob
import re
from pathlib import Path
from typing import Any

from lvmharness.formats.graph_format import (
    LAYERS_DIR,
    MAX_FILE_BYTES,
    GraphFormatError,
    read_json_file,
    validate_graph,
    validate_layers,
)
from lvmharness.models.aliases import canonical_model, graph_name

from .errors import ApiError

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,199}")


def graph_path(root: Path, name: str) -> Path:
    """The file of the saved graph ``name``: 400 for a name that is not one, 404 for one that is not there."""
    if not _NAME.fullmatch(name) or ".." in name:
        raise ApiError(400, "graph names are letters, digits, '_', '-' and '.', with no '..' or separators")
    path = (root / f"{name}.json").resolve()
    # Links (or anything else) that lead out of the graphs folder are treated as absent.
    if not path.is_relative_to(root) or not path.exists():
        raise ApiError(404, f"no saved graph named {name!r}")
    return path


def read_graph(path: Path) -> dict[str, Any]:
    """The validated graph of one file; GraphFormatError says what is wrong with it."""
    doc = read_json_file(path, MAX_FILE_BYTES)
    validate_graph(doc)
    return dict(doc)


def load(path: Path) -> dict[str, Any]:
    """``read_graph`` for a request: a bad file is a 422 with the reason."""
    try:
        return read_graph(path)
    except GraphFormatError as exc:
        raise ApiError(422, f"graph file {path.name} is not a usable graph: {exc}") from None


def measurements(root: Path, name: str) -> list[dict[str, Any]]:
    """The readable layer-time files of one graph (unreadable ones are skipped: the graph still shows)."""
    folder = root / LAYERS_DIR
    out = []
    for path in sorted(folder.glob(f"{glob.escape(name)}-*.json")) if folder.is_dir() else []:
        try:
            if not path.resolve().is_relative_to(root):
                continue
            doc = read_json_file(path, MAX_FILE_BYTES)
            validate_layers(doc)
        except (GraphFormatError, OSError):
            continue
        out.append({**doc, "file": path.name})
    # CPU inference first: what the page can measure itself and what most users read.
    out.sort(key=lambda d: (d.get("mode") != "inference", d.get("device") != "cpu", d["file"]))
    return out


def with_times(root: Path, doc: dict[str, Any], name: str) -> dict[str, Any]:
    """A graph answer: the graph, its name and every measurement of it (``layer_times``)."""
    return {**doc, "name": name, "layer_times": measurements(root, name)}


def saved(root: Path) -> tuple[list[dict[str, Any]], list[dict[str, str]]]:
    """(the saved graphs with their totals, the unreadable files with the reason)."""
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
