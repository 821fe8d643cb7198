"""The ``lvmharness.layers`` document: own times -> subtree times, shares, FLOP/s and the roofline of each leaf.

The direct children of the model should account for the measured p50 of the step; the gap is split into ops
outside any child module (the model's own forward code, the loss) and the rest: Python, dispatch and profiler
overhead between ops. The format is described in :mod:`lvmharness.measure.layers`.
"""

from __future__ import annotations

import re
from typing import Any

import torch
from torch import nn

from lvmharness import __version__
from lvmharness.core.clock import utc_now
from lvmharness.formats.graph_format import LAYER_TYPES, LAYERS_FORMAT, LAYERS_VERSION
from lvmharness.measure.layers.attribution import StepTimes
from lvmharness.measure.layers.hooks import module_paths
from lvmharness.measure.layers.traffic import OpTraffic
from lvmharness.measure.roofline import place

# How far the direct children's sum may fall from the measured p50 before the pass says so.
CHILDREN_TOLERANCE = 0.10

# --- layer types: attention vs MLP vs conv ... ---------------------------------------------------------------------

_ATTENTION = re.compile(r".*(Attention|Attn).*")
_MLP = re.compile(r".*(Mlp|MLP|FeedForward|FFN).*")
_EMBED = re.compile(r".*(PatchEmbed|Embed(ding)?)$")
_HEAD_NAMES = {"head", "fc", "classifier", "head_drop", "fc_norm", "global_pool", "pre_logits"}


def layer_type(path: str, types: dict[str, str]) -> str:
    """Category of the module at ``path``: the nearest enclosing attention / MLP / embedding / head module wins,
    else the leaf's own kind (conv, norm), else ``other`` (activations, pooling, dropout, merges)."""
    parts = path.split(".") if path else []
    for depth in range(len(parts), 0, -1):
        p = ".".join(parts[:depth])
        name, typ = parts[depth - 1], types.get(p, "")
        if _ATTENTION.fullmatch(typ) or name in ("attn", "attention"):
            return "attention"
        if _MLP.fullmatch(typ) or name in ("mlp", "ffn"):
            return "mlp"
        if _EMBED.fullmatch(typ) or name in ("patch_embed", "stem"):
            return "embedding"
        if (depth == 1 and name in _HEAD_NAMES) or typ.endswith("ClassifierHead"):
            return "head"
    typ = types.get(path, "")
    if "Conv" in typ:
        return "conv"
    if "Norm" in typ:
        return "norm"
    return "other"


# --- the tree -------------------------------------------------------------------------------------------------------


def median_step(steps: list[StepTimes]) -> int:
    """Index of the step whose total op time is the (lower) median: one whole step, so the tree stays additive."""
    order = sorted(range(len(steps)), key=lambda i: steps[i].total_ops)
    return order[(len(order) - 1) // 2]


def _node_values(path: str, sums: dict[str, float], st: StepTimes, traffic: OpTraffic, *, mode: str,
                 leaf: bool, kind: str) -> dict[str, Any]:
    """A node's times (ms), FLOPs and bytes: subtree sums beside what the module issued itself."""
    own_us = st.fwd.get(path, 0.0) + st.bwd.get(path, 0.0)
    return {
        "leaf": leaf,
        "layer_type": kind,
        "calls": traffic.module_calls.get(path, 0),
        "fwd_ms": sums["fwd"] / 1e3,
        "bwd_ms": sums["bwd"] / 1e3 if mode == "train" else None,
        "ms": (sums["fwd"] + sums["bwd"]) / 1e3,
        "own_ms": own_us / 1e3,
        "own_fwd_ms": st.fwd.get(path, 0.0) / 1e3,
        "flops": int(sums["flops"]),
        "macs": int(sums["flops"]) // 2,
        "bytes": int(sums["bytes"]),
        "own_flops": int(traffic.flops.get(path, 0)),
        "own_bytes": int(traffic.bytes.get(path, 0)),
        "own_ops": {op: us / 1e3 for op, us in sorted(st.own_ops.get(path, {}).items(), key=lambda kv: -kv[1])},
    }


def _tree(net: nn.Module, st: StepTimes, traffic: OpTraffic, macs_fwd_bwd: dict[str, int] | None, *, mode: str,
          root_name: str) -> list[dict[str, Any]]:
    """Every module once (a shared one where it first sits), in pre-order, the model first."""
    paths = module_paths(net)
    types = {p: type(m).__name__ for p, m in net.named_modules()}
    nodes: list[dict[str, Any]] = []

    def visit(path: str, mod: nn.Module, depth: int, parent: str | None) -> dict[str, float]:
        node: dict[str, Any] = {"path": path, "name": path.rsplit(".", 1)[-1] if path else root_name,
                                "type": type(mod).__name__, "depth": depth, "parent": parent}
        nodes.append(node)
        kids = [(f"{path}.{n}" if path else n, c) for n, c in mod.named_children()]
        kids = [(p, c) for p, c in kids if paths.get(id(c)) == p]
        sums = {"fwd": st.fwd.get(path, 0.0), "bwd": st.bwd.get(path, 0.0),
                "flops": float(traffic.flops.get(path, 0)), "bytes": float(traffic.bytes.get(path, 0))}
        for p, c in kids:
            sub = visit(p, c, depth + 1, path)
            for k in sums:
                sums[k] += sub[k]
        node.update(_node_values(path, sums, st, traffic, mode=mode, leaf=not kids,
                                 kind=layer_type(path, types) if path else "other"))
        if macs_fwd_bwd is not None:
            node["macs_fwd_bwd"] = int(macs_fwd_bwd.get(path, 0))
        return sums

    visit("", net, 0, None)
    return nodes


def _shares_and_roofline(nodes: list[dict[str, Any]], total_ms: float, *, mode: str,
                         peaks: dict[str, Any] | None) -> None:
    """Share of time and MACs, achieved FLOP/s, and the roofline place of every leaf and of a container's own ops."""
    total_macs = nodes[0]["macs"]
    for n in nodes:
        n["share_time"] = n["ms"] / total_ms if total_ms else 0.0
        n["share_macs"] = n["macs"] / total_macs if total_macs else 0.0
        work = n["macs_fwd_bwd"] * 2 if mode == "train" and "macs_fwd_bwd" in n else n["flops"]
        n["achieved_flops_per_s"] = work / (n["ms"] / 1e3) if n["ms"] > 0 and work else None
        n["roofline"] = None
        if n["leaf"] or n["own_flops"]:
            flops, nbytes = (n["flops"], n["bytes"]) if n["leaf"] else (n["own_flops"], n["own_bytes"])
            seconds = (n["fwd_ms"] if n["leaf"] else n["own_fwd_ms"]) / 1e3
            n["roofline"] = place(flops, nbytes, seconds, peaks)


def _by_type(nodes: list[dict[str, Any]]) -> dict[str, float]:
    """ms per layer type: every leaf's time, plus each container's own ops."""
    by_type: dict[str, float] = dict.fromkeys(LAYER_TYPES, 0.0)
    for n in nodes:
        if n["path"] and n["leaf"]:
            by_type[n["layer_type"]] += n["ms"]
        elif n["own_ms"]:  # a container's own ops (the model's own forward code included)
            by_type[n["layer_type"] if n["layer_type"] in ("attention", "mlp", "embedding", "head") else "other"] += \
                n["own_ms"]
    return by_type


def _totals(nodes: list[dict[str, Any]], per_step: list[StepTimes], chosen: int, p50: float) -> dict[str, Any]:
    """The direct children's sum against the measured p50, and where the gap goes."""
    st = per_step[chosen]
    children_ms = sum(n["ms"] for n in nodes if n["parent"] == "")
    ops_ms = st.total_ops / 1e3
    totals = {
        "ops_ms": ops_ms,
        "children_ms": children_ms,
        "model_own_ops_ms": nodes[0]["own_ms"],
        "outside_model_ms": (st.outside_fwd + st.outside_bwd) / 1e3,
        "python_in_modules_ms": st.module_python / 1e3,
        "python_outside_modules_ms": st.step_python / 1e3,
        "children_vs_p50": children_ms / p50 if p50 > 0 else None,
        "gap_ms": p50 - children_ms,
        "unattributed_ms": p50 - ops_ms,
        "within_tolerance": abs(children_ms / p50 - 1) <= CHILDREN_TOLERANCE if p50 > 0 else False,
        "tolerance": CHILDREN_TOLERANCE,
        "macs": nodes[0]["macs"],
        "flops": nodes[0]["flops"],
        "bytes": nodes[0]["bytes"],
        "steps_profiled": len(per_step),
        "step_used": chosen,
        "step_ops_ms": [s.total_ops / 1e3 for s in per_step],
    }
    if "macs_fwd_bwd" in nodes[0]:
        totals["macs_fwd_bwd"] = nodes[0]["macs_fwd_bwd"]
    return totals


def build_document(
    net: nn.Module,
    per_step: list[StepTimes],
    traffic: OpTraffic,
    *,
    macs_fwd_bwd: dict[str, int] | None,
    reference: dict[str, Any],
    peaks: dict[str, Any] | None,
    mode: str,
    meta: dict[str, Any],
) -> dict[str, Any]:
    """Assemble the tree: own times -> subtree times, shares, FLOP/s and the roofline of each leaf."""
    chosen = median_step(per_step)
    st = per_step[chosen]
    nodes = _tree(net, st, traffic, macs_fwd_bwd, mode=mode, root_name=meta["model"])
    _shares_and_roofline(nodes, nodes[0]["ms"] + (st.outside_fwd + st.outside_bwd) / 1e3, mode=mode, peaks=peaks)
    return {
        "format": LAYERS_FORMAT,
        "version": LAYERS_VERSION,
        **meta,
        "mode": mode,
        "created_utc": utc_now(),
        "lvmharness": __version__,
        "torch_num_threads": torch.get_num_threads(),
        "reference": reference,
        "totals": _totals(nodes, per_step, chosen, float(reference["p50_ms"])),
        "peaks": peaks,
        "by_type": _by_type(nodes),
        "nodes": nodes,
    }
