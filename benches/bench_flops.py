"""Params, MACs and FLOPs per model and input size, and how MACs scale with resolution.

    pytest benches/bench_flops.py -k vit            # default profile's ViT sizes
    pytest benches/bench_flops.py --lvm-models vit_huge --lvm-img-sizes 224,392

Counted on the meta device (no weights, no activations) by FlopCounterMode, then verified by fvcore on CPU;
a disagreement over 0.1% or an op without a MAC formula fails the case instead of recording a smaller number.
"""

from __future__ import annotations

import pytest

from lvmharness.bench import Lvm
from lvmharness.measure.flops import analyze, scaling_exponent
from lvmharness.measure.graph import build_graph, structure_id

SCALING_STEPS = (1, 2, 3, 4)  # multiples of the native size: every one is valid for ViT, Swin and ResNet

pytestmark = pytest.mark.lvm_metric("flops")


@pytest.mark.lvm_axes("model", "img_size", batch_size=1)  # counting needs no device, dtype or batch
def bench_macs(lvm: Lvm) -> None:
    case = lvm.case
    with lvm.record("flops") as rec:
        report = analyze(case.model, img_size=case.img_size, batch_size=1, verify=True)
        rec.values.update(
            params=report.params, macs=report.macs, flops=report.flops, macs_fwd_bwd=report.macs_fwd_bwd,
            flops_fwd_bwd=report.flops_fwd_bwd, gmacs=report.macs / 1e9,
        )
        graph = build_graph(case.model, img_size=case.img_size, backward=False)
        rec.values.update(graph_modules=graph["totals"]["modules"], graph_structure_id=structure_id(graph))
        rec.provenance.update(
            counter=report.counter, counted_on=report.device, uncounted_ops=report.uncounted_ops,
            macs_by_op=report.by_op, verified_by=report.verified_by, convention=report.convention,
        )


@pytest.mark.lvm_axes("model", batch_size=1)  # each model once, from its native size up
def bench_macs_scaling(lvm: Lvm) -> None:
    case = lvm.case
    with lvm.record("flops_scaling") as rec:
        sizes = [case.img_size * k for k in SCALING_STEPS]
        macs = [analyze(case.model, img_size=s, backward=False).macs for s in sizes]
        rec.values.update(
            macs_exponent_vs_pixels=scaling_exponent(sizes, macs), scaling_img_sizes=sizes, scaling_macs=macs
        )
        rec.provenance["fit"] = "least squares of log(MACs) on log(img_size^2)"
