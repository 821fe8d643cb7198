"""Run folders written through the real run store, with values chosen by the test (no model is run)."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

from lvmharness.store.records import make_record
from lvmharness.store.run_folder import RunStore

FP_A = "aaaaaaaaaaaaaaaa"
FP_B = "bbbbbbbbbbbbbbbb"


def make_run(root: Path, run_id: str, *, latency_ms: float, macs: int = 1000, contended: bool = False,
             fingerprint: str = FP_A, seed: int = 0, rounds: int = 20, cv: float = 0.01,
             commit: str | None = None) -> Path:
    """One run: a latency case (p50 and raw samples around ``latency_ms`` with relative noise ``cv``) and a
    flops case (``macs``)."""
    rng = random.Random(seed)
    samples = [latency_ms * (1 + rng.gauss(0, cv)) for _ in range(rounds)]
    p50 = sorted(samples)[rounds // 2]
    store = RunStore(root, run_id, fingerprint=fingerprint)
    common: dict[str, Any] = {"model": "resnet_tiny", "alias": "tiny", "family": "resnet", "device": "cpu",
                              "dtype": "fp32", "batch_size": 1, "img_size": 32}
    store.add(make_record(run_id=run_id, metric="latency", **common,
                          values={"latency_ms_p50": p50, "samples": samples, "contended": contended},
                          provenance={"rounds": rounds}))
    store.add(make_record(run_id=run_id, metric="flops", **common, values={"macs": macs, "params": 10}))
    if commit is not None:
        store.write_env({"git_commit": commit, "fingerprint": fingerprint})
    store.close()
    return root / run_id
