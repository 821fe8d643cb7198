"""Graph export: invariants on every smoke and original model, a golden file, and the file format checks."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from lvmharness.formats.graph_format import GraphFormatError, validate_graph, walk
from lvmharness.measure.graph import build_graph, check_invariants, module_graph
from lvmharness.models.build import count_params, create_model

GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "graph_smoke_vit_32_b2.json"
VOLATILE = ("created_utc", "lvmharness")


@pytest.mark.parametrize("model", ["smoke_vit", "smoke_deit", "smoke_swin", "smoke_resnet", "vit", "swin", "resnet"])
def test_invariants(model: str) -> None:
    doc = build_graph(model)
    validate_graph(doc)
    check_invariants(doc, create_model(model, device="meta"))
    leaves = [n for n in walk(doc["root"]) if not n["children"]]
    assert sum(n["macs_own"] for n in leaves) == doc["totals"]["macs"]
    assert doc["root"]["macs"] == doc["totals"]["macs"]


def test_vit_attention_shows_its_sdpa_as_an_op_leaf_with_shapes() -> None:
    doc = build_graph("vit")
    nodes = {n["path"]: n for n in walk(doc["root"])}
    attn = nodes["blocks.0.attn"]
    assert attn["output_shapes"] == [[1, 197, 768]]
    ops = [c for c in attn["children"] if c["kind"] == "op"]
    assert len(ops) == 1 and ops[0]["macs"] == 2 * 197 * 197 * 768  # QK^T and AV, all heads
    assert nodes["blocks.0.attn.qkv"]["params"] == 768 * 3 * 768 + 3 * 768
    assert nodes["blocks.0.attn.qkv"]["macs"] == 197 * 768 * 3 * 768
    assert nodes["blocks"]["type"] == "Sequential" and len(nodes["blocks"]["children"]) == 12
    assert doc["totals"]["weight_bytes"] == 4 * doc["totals"]["params"]


def test_dtype_scales_bytes_and_batch_scales_activations() -> None:
    fp32 = build_graph("smoke_vit", dtype="fp32", backward=False)
    bf16 = build_graph("smoke_vit", dtype="bf16", backward=False)
    b4 = build_graph("smoke_vit", batch_size=4, backward=False)
    assert bf16["totals"]["weight_bytes"] * 2 == fp32["totals"]["weight_bytes"]
    assert bf16["totals"]["activation_bytes"] * 2 == fp32["totals"]["activation_bytes"]
    assert b4["totals"]["activation_bytes"] == 4 * fp32["totals"]["activation_bytes"]
    assert b4["totals"]["macs"] == 4 * fp32["totals"]["macs"]
    nodes = {n["path"]: n for n in walk(fp32["root"])}
    assert nodes["blocks.0.ls1"]["activation_bytes"] == 0  # Identity allocates nothing


class Tied(nn.Module):
    """Two modules sharing one weight: params must be counted once."""

    def __init__(self) -> None:
        super().__init__()
        self.enc = nn.Linear(8, 8, bias=False)
        self.dec = nn.Linear(8, 8, bias=False)
        self.dec.weight = self.enc.weight

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.dec(self.enc(x))


def test_tied_weights_are_counted_once() -> None:
    with torch.device("meta"):
        net = Tied()
    doc = module_graph(net, torch.empty(2, 8, device="meta"))
    check_invariants(doc, net)
    assert doc["totals"]["params"] == count_params(net) == 64
    assert doc["totals"]["macs"] == 2 * 2 * 64


def _stable(doc: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in doc.items() if k not in VOLATILE}


def test_golden_totals_are_derived_by_hand() -> None:
    """The golden file was written by the code it checks, so it only detects change; its totals are held to
    formulas here. smoke_vit = ViT with d=64, depth 2, patch 8 at 32 px (16 patches + class token = 17 tokens),
    1000 classes, batch 2. By hand: 178,600 parameters and 2,005,760 MACs per image (the ViT formulas of
    tests/measure/test_flops.py). A training step is forward + 2 x forward for the gradients, minus the patch
    embedding's input gradient (the image needs none): 3 x fwd - 16 patches x (3 x 8 x 8) x 64 per image.
    Weights are fp32.
    Not derived here (change detection only): ``activation_bytes``, ``modules`` and the per-node values."""
    from tests.measure.test_flops import vit_macs, vit_params

    params = vit_params(64, 2, patch=8, tokens=17)
    macs_per_image = vit_macs(64, 2, patch=8, img=32)
    assert (params, macs_per_image) == (178_600, 2_005_760)
    batch = 2
    fwd = batch * macs_per_image
    stem_input_grad = batch * 16 * (3 * 8 * 8) * 64
    expected = {"params": params, "macs": fwd, "flops": 2 * fwd, "macs_fwd_bwd": 3 * fwd - stem_input_grad,
                "weight_bytes": 4 * params}
    golden = json.loads(GOLDEN.read_text())["totals"]
    built = build_graph("smoke_vit", batch_size=batch)["totals"]
    for totals in (golden, built):
        assert {k: totals[k] for k in expected} == expected


def test_golden_file() -> None:
    """Change detector (see test_golden_totals_are_derived_by_hand for what is derived).
    Refresh with: LVM_UPDATE_GOLDEN=1 pytest tests/measure/test_graph.py -k golden"""
    doc = _stable(json.loads(json.dumps(build_graph("smoke_vit", batch_size=2))))
    if os.environ.get("LVM_UPDATE_GOLDEN"):
        GOLDEN.write_text(json.dumps(doc, indent=1) + "\n")
    golden = json.loads(GOLDEN.read_text())
    assert doc == golden


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(format="other"), "'format' must be"),
        (lambda d: d.update(version=99), "version 99 is not supported"),
        (lambda d: d.pop("totals"), "missing key 'totals'"),
        (lambda d: d["root"].update(macs="many"), "'macs' must be int"),
        (lambda d: d["root"]["children"].append("x"), "every node must be an object"),
    ],
)
def test_malformed_graphs_are_rejected_with_the_reason(mutate: Any, message: str) -> None:
    doc = build_graph("smoke_resnet", backward=False)
    mutate(doc)
    with pytest.raises(GraphFormatError, match=message):
        validate_graph(doc)
    with pytest.raises(GraphFormatError, match="JSON object"):
        validate_graph([1, 2])
