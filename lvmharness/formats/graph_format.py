"""The graph file format (``lvmharness.measure.graph`` v1): its constants, traversal and validation.

Torch-free on purpose: the architecture page reads saved graphs through this module without importing PyTorch.
The format is documented in docs/graph-format.md.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from lvmharness.core.errors import UserError
from lvmharness.core.fileio import atomic_write_json
from lvmharness.core.vocab import STORAGE_DTYPE_NAMES

GRAPH_FORMAT = "lvmharness.graph"
GRAPH_VERSION = 1
# The layer types of a layers document (``by_type``), in the order charts and tables show them.
LAYER_TYPES = ("attention", "mlp", "conv", "norm", "embedding", "head", "other")
LAYERS_FORMAT = "lvmharness.layers"  # measured time per module (lvmharness.measure.layers)
LAYERS_DIR = "layers"  # where the architecture page finds measurements: <graphs folder>/layers/
LAYERS_VERSION = 1
# Deepest module nesting a graph may have. timm's deepest models nest about ten levels; a deeper file is damaged or
# hostile, and serializing it again would exhaust the interpreter's recursion limit.
MAX_GRAPH_DEPTH = 128
MAX_FILE_BYTES = 64 * 1024 * 1024


class GraphFormatError(UserError, ValueError):
    """A graph file that is not a valid lvmharness graph of a version this code reads."""


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Pre-order traversal of a graph's nodes."""
    stack = [node]
    while stack:  # iterative: a deep tree must not exhaust the recursion limit
        n = stack.pop()
        yield n
        stack.extend(reversed(n.get("children", [])))


_NODE_KEYS = {
    "path": str, "name": str, "type": str, "kind": str, "depth": int, "params_own": int, "params": int,
    "macs_own": int, "macs": int, "children": list,
}


def _count(value: Any) -> bool:
    """A count (params, MACs, depth): an integer >= 0; a bool is not one."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def validate_graph(doc: Any) -> None:
    """Raise GraphFormatError naming the first problem; used by every reader (the Flask page included)."""
    if not isinstance(doc, dict):
        raise GraphFormatError("a graph file must hold a JSON object")
    if doc.get("format") != GRAPH_FORMAT:
        raise GraphFormatError(f"'format' must be {GRAPH_FORMAT!r}, found {doc.get('format')!r}")
    if doc.get("version") != GRAPH_VERSION:
        raise GraphFormatError(
            f"graph version {doc.get('version')!r} is not supported; this lvmharness reads version {GRAPH_VERSION}"
        )
    for key in ("model", "totals", "root", "img_size", "batch_size", "dtype"):
        if key not in doc:
            raise GraphFormatError(f"missing key {key!r}")
    totals = doc["totals"]
    if not isinstance(totals, dict) or not all(_count(totals.get(k)) for k in ("params", "macs")):
        raise GraphFormatError("'totals' must hold integer 'params' and 'macs', each >= 0")
    for key in ("img_size", "batch_size"):
        if not _count(doc[key]) or doc[key] < 1:
            raise GraphFormatError(f"{key!r} must be a positive integer, found {str(doc[key])[:40]}")
    stack = [(doc["root"], 0)]
    count = 0
    while stack:
        n, level = stack.pop()
        count += 1
        if count > 1_000_000:
            raise GraphFormatError("more than a million nodes")
        if level > MAX_GRAPH_DEPTH:
            raise GraphFormatError(f"modules nested deeper than {MAX_GRAPH_DEPTH} levels")
        if not isinstance(n, dict):
            raise GraphFormatError("every node must be an object")
        for key, typ in _NODE_KEYS.items():
            if not isinstance(n.get(key), typ):
                raise GraphFormatError(f"node {n.get('path')!r}: {key!r} must be {typ.__name__}")
            if typ is int and not _count(n[key]):
                raise GraphFormatError(f"node {n.get('path')!r}: {key!r} must be an integer >= 0 (a count), "
                                       f"found {str(n[key])[:40]}")
        stack.extend((c, level + 1) for c in n["children"])


_LAYER_NODE_KEYS: dict[str, type | tuple[type, ...]] = {
    "path": str, "type": str, "depth": int, "ms": (int, float), "share_time": (int, float),
}


def validate_layers(doc: Any) -> None:
    """Raise GraphFormatError naming the first problem of an ``lvmharness.layers`` document."""
    if not isinstance(doc, dict):
        raise GraphFormatError("a layer-times file must hold a JSON object")
    if doc.get("format") != LAYERS_FORMAT:
        raise GraphFormatError(f"'format' must be {LAYERS_FORMAT!r}, found {doc.get('format')!r}")
    if doc.get("version") != LAYERS_VERSION:
        raise GraphFormatError(f"layer-times version {doc.get('version')!r} is not supported; this lvmharness "
                               f"reads version {LAYERS_VERSION}")
    for key in ("model", "device", "mode", "img_size", "batch_size", "dtype", "totals", "nodes", "reference"):
        if key not in doc:
            raise GraphFormatError(f"missing key {key!r}")
    if not isinstance(doc["nodes"], list) or not doc["nodes"]:
        raise GraphFormatError("'nodes' must be a non-empty list")
    for n in doc["nodes"]:
        if not isinstance(n, dict):
            raise GraphFormatError("every node must be an object")
        for key, typ in _LAYER_NODE_KEYS.items():
            if not isinstance(n.get(key), typ) or isinstance(n.get(key), bool):
                raise GraphFormatError(f"node {n.get('path')!r}: {key!r} has the wrong type")
        if n["depth"] > MAX_GRAPH_DEPTH:
            raise GraphFormatError(f"modules nested deeper than {MAX_GRAPH_DEPTH} levels")


def read_json_file(path: Path, max_bytes: int = MAX_FILE_BYTES) -> Any:
    """Parse a JSON file that may be hostile; GraphFormatError for anything that is not a readable JSON file.

    Opened without blocking and checked on the open descriptor, so a FIFO, device or socket named ``x.json``
    (or a file swapped for one between listing and reading) is refused instead of hanging the reader; size is
    capped; nesting too deep for the parser is an error about this file, not a crash of the caller.
    """
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError as exc:
        raise GraphFormatError(f"cannot open: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        st = os.fstat(fh.fileno())
        if not stat.S_ISREG(st.st_mode):
            raise GraphFormatError("not a regular file")
        if st.st_size > max_bytes:
            raise GraphFormatError(f"larger than {max_bytes} bytes")
        data = fh.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise GraphFormatError(f"larger than {max_bytes} bytes")
    try:
        return json.loads(data.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise GraphFormatError(f"not UTF-8 text: {exc.reason} at byte {exc.start}") from None
    except json.JSONDecodeError as exc:
        raise GraphFormatError(f"not valid JSON: {exc}") from None
    except ValueError as exc:  # an integer longer than sys.get_int_max_str_digits() (4300 digits by default)
        raise GraphFormatError(f"a number in it cannot be read ({str(exc)[:120]})") from None
    except RecursionError:
        raise GraphFormatError("JSON nested too deep to parse") from None




def layers_file_name(graph_stem: str, doc: dict[str, Any]) -> str:
    """File name of a measurement in the page's ``layers/`` folder: ``<graph stem>-<device>-<mode>.json``, the
    graph stem being ``lvmharness.models.aliases.graph_name`` of the document's model, size, batch and dtype."""
    device = str(doc["device"]).replace(":", "_")
    return f"{graph_stem}-{device}-{doc['mode']}.json"


def save_for_page(doc: dict[str, Any], graphs_dir: Path, graph_stem: str,
                  make_graph: Callable[[], dict[str, Any]]) -> Path:
    """Write a layers document into ``<graphs_dir>/layers/``, and the model's graph ``<graph_stem>.json`` beside it
    when it is missing (``make_graph`` builds it; the page shows a measurement on its graph). Mixed-precision runs
    (amp_*) have no graph of their own: the graph file holds one storage dtype."""
    graphs_dir.mkdir(parents=True, exist_ok=True)
    graph_path = graphs_dir / f"{graph_stem}.json"
    if not graph_path.exists() and doc["dtype"] in STORAGE_DTYPE_NAMES:
        atomic_write_json(graph_path, make_graph())
    path = graphs_dir / LAYERS_DIR / layers_file_name(graph_stem, doc)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, doc)
    return path
