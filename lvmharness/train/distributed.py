"""Data-parallel training under ``torchrun``: the process's place in the group, and the three collectives the
loop needs (barrier, sum, max). gloo on CPU, nccl on CUDA. Without torchrun every function is a no-op."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.distributed as dist

from lvmharness.runtime.devices import resolve_device


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def from_env() -> Dist:
    """The variables torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK); a single process without them."""
    env = os.environ
    return Dist(int(env.get("RANK", "0")), int(env.get("WORLD_SIZE", "1")), int(env.get("LOCAL_RANK", "0")))


def init(d: Dist, device_spec: str) -> torch.device:
    """The device of this process (``cuda:LOCAL_RANK`` under torchrun on CUDA), joining the process group."""
    want = resolve_device(device_spec)
    if not d.enabled:
        return want
    device = torch.device("cuda", d.local_rank) if want.type == "cuda" else want
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return device


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def reduce(d: Dist, values: Sequence[float], device: torch.device, op: str = "sum") -> list[float]:
    """Element-wise sum or max of ``values`` over all processes, in one collective (float64: exact counts)."""
    if not d.enabled:
        return [float(v) for v in values]
    # nccl reduces CUDA tensors only; gloo reduces CPU tensors.
    t = torch.tensor(list(values), dtype=torch.float64, device=device if device.type == "cuda" else "cpu")
    dist.all_reduce(t, op=dist.ReduceOp.MAX if op == "max" else dist.ReduceOp.SUM)
    return [float(v) for v in t.tolist()]


def close(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
