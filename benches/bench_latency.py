"""Forward latency and throughput over models × devices × dtypes × batch sizes × image sizes.

    pytest benches/ -k vit                          # the default profile, ViT cases only
    pytest benches/ -k "resnet and b8"              # ResNet-50 at batch 8
    pytest benches/ --lvm-profile smoke             # tiny models, seconds (what CI runs)
    pytest benches/ --lvm-models deit_small,swin_tiny --lvm-img-sizes 224 --lvm-batch-sizes 1,32
"""

from __future__ import annotations

from typing import Any

import pytest

from lvmharness.bench import Lvm
from lvmharness.measure.latency import forward_latency

pytestmark = pytest.mark.lvm_metric("latency")


def bench_forward_latency(lvm: Lvm, benchmark: Any) -> None:
    """One pytest-benchmark round = one synchronized forward of the whole batch (inference mode)."""
    benchmark.group = f"latency {lvm.case.model} {lvm.case.device} {lvm.case.dtype}"
    with lvm.record("latency") as rec:
        loaded = lvm.model()
        result = forward_latency(loaded.prepared, lvm.forward_case(), loaded.timer, runner=lvm.runner(benchmark))
        values, provenance = result.values(), result.provenance()
        rec.values.update(values)
        rec.provenance.update(provenance)
        # Counting (meta device) and the peak probe run between timed passes, never inside one.
        eff = lvm.efficiency(values)
        rec.provenance["peak_flops_per_s"] = eff.pop("peak_flops_per_s")
        rec.provenance["peak_source"] = eff.pop("peak_source")
        rec.provenance.update(eff.pop("efficiency_notes"))
        rec.values.update(eff)
        values.update(eff)
        lvm.extra_info(benchmark, values)
        # Profiling distorts time: the trace is its own pass, after the measurement (only with --lvm-trace).
        prepared = loaded.prepared
        lvm.trace("latency", prepared.forward_fn(prepared.make_input(lvm.case.batch_size or 1, lvm.case.img_size)),
                  values)
    # Time per layer is its own pass too (only with --lvm-layers), held against this case's p50.
    lvm.layers(values)
