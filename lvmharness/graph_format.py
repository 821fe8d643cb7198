"""The graph file format (``lvmharness.graph`` v1): its constants, traversal and validation.

Torch-free on purpose: the architecture page reads saved graphs through this module without importing PyTorch.
The format is documented in docs/graph-format.md.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

GRAPH_FORMAT = "lvmharness.graph"
GRAPH_VERSION = 1


class GraphFormatError(ValueError):
    """A graph file that is not a valid lvmharness graph of a version this code reads."""


def walk(node: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """Pre-order traversal of a graph's nodes."""
    yield node
    for child in node.get("children", []):
        yield from walk(child)


_NODE_KEYS = {
    "path": str, "name": str, "type": str, "kind": str, "depth": int, "params_own": int, "params": int,
    "macs_own": int, "macs": int, "children": list,
}


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
    if not isinstance(totals, dict) or not all(isinstance(totals.get(k), int) for k in ("params", "macs")):
        raise GraphFormatError("'totals' must hold integer 'params' and 'macs'")
    stack = [doc["root"]]
    count = 0
    while stack:
        n = stack.pop()
        count += 1
        if count > 1_000_000:
            raise GraphFormatError("more than a million nodes")
        if not isinstance(n, dict):
            raise GraphFormatError("every node must be an object")
        for key, typ in _NODE_KEYS.items():
            if not isinstance(n.get(key), typ):
                raise GraphFormatError(f"node {n.get('path')!r}: {key!r} must be {typ.__name__}")
        stack.extend(n["children"])




def canonical_model(model: str) -> str:
    """Aliases without architecture overrides share their timm model's files (``vit`` and ``vit_base`` are one)."""
    from lvmharness import aliases

    spec = aliases.lookup(model)
    if spec is not None and not spec.overrides:
        return spec.timm_name
    return model


def graph_name(model: str, img_size: int, batch_size: int, dtype: str) -> str:
    """File stem of a saved graph: ``vit_base_patch16_224-224-b1-fp32``."""
    return f"{canonical_model(model)}-{img_size}-b{batch_size}-{dtype}"
