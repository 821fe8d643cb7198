"""Timer fidelity: the same tiny model timed by our core, torch.utils.benchmark.Timer and a bare loop.

    pytest benches/bench_fidelity.py --lvm-profile smoke
"""

from __future__ import annotations

from typing import Any

import pytest

from lvmharness.bench import Lvm, LvmSession
from lvmharness.bench.matrix import BenchCase
from lvmharness.measure.fidelity import fidelity

pytestmark = pytest.mark.lvm_metric("fidelity")


@pytest.mark.parametrize("model", ["smoke_vit", "smoke_resnet"])
def bench_timer_fidelity(lvm_session: LvmSession, model: str, benchmark: Any) -> None:
    case = BenchCase(model, lvm_session.devices[0], "fp32", 1, 32)
    lvm = Lvm(lvm_session, case)
    with lvm.record("timer_fidelity") as rec:
        loaded = lvm.model()
        fn = loaded.prepared.forward_fn(loaded.prepared.make_input(1, case.img_size))
        result = fidelity(fn, loaded.timer, key=("fidelity", case.label), runner=lvm.runner(benchmark))
        values = result.values()
        rec.values.update(values)
        rec.provenance.update(result.provenance())
        benchmark.extra_info.update(values)
