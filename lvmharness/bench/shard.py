"""Shards of a case matrix: ``--lvm-shard K/N`` runs a deterministic, cost-balanced share of the benches.

Every shard process computes the same plan on its own (same matrix, same counts, same order), so no coordinator is
needed: a Slurm array task, a Kubernetes Indexed Job or a CI matrix entry only needs its K. The shards are disjoint
and their union is the whole matrix, because each case goes to exactly one shard of one plan.

Balance is by expected cost, not by count: a ViT-L batch-256 training case costs thousands of smoke-model cases.
The expected cost of a case is ``MACs per image × batch × metric weight`` (:func:`case_cost`), where the metric
weight is roughly the number of forward passes a case of that metric runs (a backward pass costs about two forwards
in MACs: one matmul for the input gradient, one for the weight gradient). Cases are placed by LPT, longest
processing time first (Graham, "Bounds on multiprocessing timing anomalies", SIAM J. Appl. Math. 1969): sorted by
cost, largest first, each to the shard with the least cost so far. Its makespan is within 4/3 of the best possible.

Torch-free: the plugin supplies the costs (counting MACs needs the models).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from lvmharness.core.errors import UserError

# Forward-pass equivalents of one case, per bench metric (the ``lvm_metric`` marker of a bench module).
METRIC_WEIGHTS: Mapping[str, float] = {
    # warm-up rounds plus timed rounds at the case's batch (budget-bound: tens of rounds)
    "latency": 20.0,
    # batch-1 requests one after another plus an offline-throughput pass at the profile's offline batch
    "instance": 20.0,
    # bounded training steps: forward + backward (~3 forwards) each; profiles run a handful of steps
    "train": 15.0,
    # a fresh process per mode: one forward (inference) or one forward+backward (train step)
    "memory": 3.0,
    # counted on the meta device, then one real batch-1 forward by the second counter
    "flops": 1.0,
    # a tiny model timed by three timers
    "fidelity": 3.0,
    # per-module timing: a profiled pass plus timed rounds
    "layers": 20.0,
}
DEFAULT_WEIGHT = 10.0  # a metric this table does not know: between a counting case and a timed one


class ShardSpecError(UserError, ValueError):
    """``--lvm-shard`` text that is not ``K/N`` with 1 <= K <= N."""


@dataclass(frozen=True)
class Shard:
    index: int  # K, 1-based as users write it
    count: int  # N

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str) -> Shard:
    m = re.fullmatch(r"\s*([0-9]{1,9})\s*/\s*([0-9]{1,9})\s*", text)  # ASCII digits: \d also matches '١'
    if not m:
        raise ShardSpecError(f"shard {text[:40]!r} not understood: use K/N, e.g. 1/3 for the first of three shards")
    k, n = int(m.group(1)), int(m.group(2))
    if n < 1 or not 1 <= k <= n:
        raise ShardSpecError(f"shard {text!r}: K must be between 1 and N (N >= 1), e.g. 1/3, 2/3, 3/3")
    return Shard(k, n)


def case_cost(metric: str | None, macs_per_image: int | float, batch_size: int | None) -> float:
    """Expected cost of one case in MACs: MACs per image × batch × the metric's weight."""
    weight = METRIC_WEIGHTS.get(metric or "", DEFAULT_WEIGHT)
    return float(macs_per_image) * max(batch_size or 1, 1) * weight


def plan(costs: Mapping[str, float], count: int) -> dict[str, int]:
    """Case id -> shard index (1-based) for ``count`` shards, by LPT. Deterministic: ties in cost are broken by id,
    ties in load by the lower shard index, so every process computes the same plan from the same costs."""
    if count < 1:
        raise ShardSpecError(f"shard count must be >= 1, got {count}")
    loads = [0.0] * count
    out: dict[str, int] = {}
    for case in sorted(costs, key=lambda c: (-costs[c], c)):
        k = min(range(count), key=lambda i: (loads[i], i))
        loads[k] += costs[case]
        out[case] = k + 1
    return out


def loads(costs: Mapping[str, float], assignment: Mapping[str, int], count: int) -> list[float]:
    """Summed expected cost per shard (index 0 = shard 1)."""
    out = [0.0] * count
    for case, k in assignment.items():
        out[k - 1] += costs[case]
    return out


def imbalance(shard_loads: Sequence[float]) -> float:
    """Largest shard cost over smallest (1.0 = perfect); infinite when a shard got nothing while another did."""
    lo, hi = min(shard_loads), max(shard_loads)
    if hi == 0:
        return 1.0
    return hi / lo if lo > 0 else float("inf")
