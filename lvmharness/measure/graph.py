"""Model graph export: the module tree with shapes, params, MACs and activation memory per node.

One forward on the ``meta`` device (nothing allocated) gives everything: forward hooks record each module's
output shapes; ``FlopCounterMode``'s module tracker attributes MACs to every module on the call stack.

File format ``lvmharness.graph`` version 1 (``lvmharness.formats.graph_format``; docs/graph-format.md)::

    {"format": "lvmharness.graph", "version": 1, "model": ..., "totals": {...}, "root": NODE}
    NODE = {"path", "name", "type", "kind": "module"|"op", "depth", "calls", "output_shapes",
            "params_own", "params", "macs_own", "macs", "activation_bytes", "children": [NODE, ...]}

Invariants (tested): the ``macs_own`` of all nodes sum to ``totals.macs`` and leaves carry it all — MACs a
container computes itself (timm's attention calls SDPA directly) appear as ``kind: "op"`` leaf children;
``params_own`` over all nodes sums to the deduplicated parameter count.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from lvmharness import __version__
from lvmharness.core.clock import utc_now
from lvmharness.core.errors import BadValueError
from lvmharness.formats.graph_format import GRAPH_FORMAT, GRAPH_VERSION, walk
from lvmharness.measure.flops import PRIMARY_COUNTER, OpCounts, count_run, forward_backward_macs
from lvmharness.models.build import count_params, create_model, resolve
from lvmharness.runtime.devices import DTYPES


def _tensors(obj: Any) -> Iterator[torch.Tensor]:
    if isinstance(obj, torch.Tensor):
        yield obj
    elif isinstance(obj, list | tuple):
        for item in obj:
            yield from _tensors(item)
    elif isinstance(obj, dict):
        for item in obj.values():
            yield from _tensors(item)


def _short_op(op: str) -> str:
    return op.split(".")[-1].lstrip("_") if op.startswith("aten.") else op


def build_graph(
    model: str,
    *,
    img_size: int | None = None,
    batch_size: int = 1,
    dtype: str = "fp32",
    backward: bool = True,
) -> dict[str, Any]:
    """Analyse a registry/timm model on the meta device and return the graph document."""
    if batch_size < 1:
        raise BadValueError(f"batch_size must be >= 1, got {batch_size}")
    spec = resolve(model)
    size = img_size or spec.default_img_size
    net = create_model(spec, img_size=size, device="meta").eval()
    doc = module_graph(
        net, torch.empty(batch_size, 3, size, size, device="meta"), dtype=dtype, backward=backward,
        name=spec.timm_name,
    )
    return {**doc, "model": spec.timm_name, "alias": model, "family": spec.family, "img_size": size}


@dataclass
class _Outputs:
    """What forward hooks saw of every module call: output shapes (first call), calls, new activation elements."""

    shapes: dict[str, list[list[int]]] = field(default_factory=dict)
    calls: dict[str, int] = field(default_factory=dict)
    act_elems: dict[str, int] = field(default_factory=dict)


def _count_with_outputs(net: nn.Module, x: torch.Tensor, paths: dict[int, str]) -> tuple[OpCounts, _Outputs]:
    """One counted no-grad forward, with a hook on every module recording what it output."""
    seen = _Outputs()

    def hook(mod: nn.Module, inp: Any, out: Any) -> None:
        path = paths[id(mod)]
        outs = list(_tensors(out))
        ins = {id(t) for t in _tensors(inp)} | {id(t._base) for t in _tensors(inp) if t._base is not None}
        # An output that is an input or a view of one (Identity, eval Dropout, reshapes) allocates nothing new.
        new = [t for t in outs if id(t) not in ins and (t._base is None or id(t._base) not in ins)]
        seen.calls[path] = seen.calls.get(path, 0) + 1
        seen.act_elems[path] = seen.act_elems.get(path, 0) + sum(t.numel() for t in new)
        seen.shapes.setdefault(path, [list(t.shape) for t in outs])

    handles = [m.register_forward_hook(hook) for m in net.modules()]
    try:

        def run() -> None:
            with torch.no_grad():
                net(x)

        counts = count_run(net, run)
    finally:
        for h in handles:
            h.remove()
    return counts, seen


def _params_own(named: dict[str, nn.Module]) -> dict[str, int]:
    """Params: each tensor counted once, at the first module (in registration order) that owns it."""
    seen_params: set[int] = set()
    params_own: dict[str, int] = {}
    for path, mod in named.items():
        own = 0
        for p in mod.parameters(recurse=False):
            if id(p) not in seen_params:
                seen_params.add(id(p))
                own += p.numel()
        params_own[path] = own
    return params_own


def _op_leaves(path: str, depth: int, own_ops: dict[str, int]) -> list[dict[str, Any]]:
    """MACs a container computes itself (timm's attention calls SDPA directly), as ``kind: "op"`` leaves."""
    return [{
        "path": f"{path}#{_short_op(op)}", "name": _short_op(op), "type": op, "kind": "op",
        "depth": depth + 1, "calls": None, "output_shapes": None, "params_own": 0, "params": 0,
        "macs_own": v, "macs": v, "activation_bytes": None, "children": [],
    } for op, v in sorted(own_ops.items())]


@dataclass
class _Tree:
    """Builds the node tree from the counts, the hooks' outputs and the own params."""

    paths: dict[int, str]
    counts: OpCounts
    outputs: _Outputs
    params_own: dict[str, int]
    itemsize: int
    model_name: str

    def node(self, path: str, mod: nn.Module, depth: int) -> dict[str, Any]:
        children = [
            self.node(f"{path}.{name}" if path else name, child, depth + 1)
            for name, child in mod.named_children()
            if self.paths.get(id(child)) == (f"{path}.{name}" if path else name)  # shared modules: first place only
        ]
        subtree_ops = self.counts.by_module.get(path, {})
        own_ops = dict(subtree_ops)
        for child in children:
            for op, v in self.counts.by_module.get(child["path"], {}).items():
                own_ops[op] = own_ops.get(op, 0) - v
        own_ops = {op: v for op, v in own_ops.items() if v}
        if children:
            children.extend(_op_leaves(path, depth, own_ops))
        out = self.outputs
        return {
            "path": path,
            "name": path.rsplit(".", 1)[-1] if path else self.model_name,
            "type": type(mod).__name__,
            "kind": "module",
            "depth": depth,
            "calls": out.calls.get(path, 0),
            "output_shapes": out.shapes.get(path),
            "params_own": self.params_own.get(path, 0),
            "params": self.params_own.get(path, 0) + sum(c["params"] for c in children),
            "macs_own": 0 if children else sum(own_ops.values()),
            "macs": sum(subtree_ops.values()),
            "activation_bytes": out.act_elems[path] * self.itemsize if path in out.act_elems else None,
            "children": children,
        }


def module_graph(
    net: nn.Module, x: torch.Tensor, *, dtype: str = "fp32", backward: bool = True, name: str | None = None
) -> dict[str, Any]:
    """The graph document of any module on an input (use the meta device to allocate nothing)."""
    if dtype not in DTYPES:
        raise BadValueError(f"unknown dtype {dtype!r}: valid dtypes are {', '.join(DTYPES)}")
    model_name = name or type(net).__name__
    itemsize = torch.empty((), dtype=DTYPES[dtype]).element_size()
    net.eval()
    named = dict(net.named_modules())
    paths = {id(m): p for p, m in named.items()}
    counts, outputs = _count_with_outputs(net, x, paths)
    macs_fwd_bwd = forward_backward_macs(net, x).macs if backward else None
    root = _Tree(paths, counts, outputs, _params_own(named), itemsize, model_name).node("", net, 0)
    leaves = [n for n in walk(root) if not n["children"]]
    return {
        "format": GRAPH_FORMAT,
        "version": GRAPH_VERSION,
        "model": model_name,
        "alias": model_name,
        "family": "",
        "img_size": int(x.shape[-1]),
        "batch_size": int(x.shape[0]),
        "dtype": dtype,
        "input_shape": list(x.shape),
        "counter": PRIMARY_COUNTER,
        "created_utc": utc_now(),
        "lvmharness": __version__,
        "totals": {
            "params": count_params(net),
            "macs": counts.macs,
            "flops": 2 * counts.macs,
            "macs_fwd_bwd": macs_fwd_bwd,
            "weight_bytes": count_params(net) * itemsize,
            "activation_bytes": sum(n["activation_bytes"] or 0 for n in leaves),
            "modules": sum(1 for n in walk(root) if n["kind"] == "module"),
        },
        "root": root,
    }


def structure_id(doc: dict[str, Any]) -> int:
    """A 48-bit fingerprint of the module tree (paths, types, output shapes): changes when the architecture does."""
    shape = [(n["path"], n["type"], n.get("output_shapes")) for n in walk(doc["root"])]
    return int(hashlib.sha256(json.dumps(shape).encode()).hexdigest()[:12], 16)


def check_invariants(doc: dict[str, Any], model: nn.Module | None = None) -> None:
    """Leaf MACs sum to the total; own params sum to the total (and to the model's deduplicated count)."""
    nodes = list(walk(doc["root"]))
    leaf_macs = sum(n["macs_own"] for n in nodes if not n["children"])
    if leaf_macs != doc["totals"]["macs"]:
        raise AssertionError(f"leaf MACs {leaf_macs} != total {doc['totals']['macs']}")
    if any(n["macs_own"] for n in nodes if n["children"]):
        raise AssertionError("a container node carries own MACs; they belong in an op leaf")
    own_params = sum(n["params_own"] for n in nodes)
    if own_params != doc["totals"]["params"] or doc["root"]["params"] != own_params:
        raise AssertionError(f"own params {own_params} != total {doc['totals']['params']}")
    if model is not None and count_params(model) != own_params:
        raise AssertionError("params differ from the model's deduplicated count")
    for n in nodes:
        if n["children"] and n["macs"] != sum(c["macs"] for c in n["children"]) + n["macs_own"]:
            raise AssertionError(f"node {n['path']!r}: subtree MACs differ from its children's sum")
