"""Execution options: torch.compile past Dynamo's recompile limit, Dynamo resets, and the eager fallback refused."""

from __future__ import annotations

from typing import Any

import pytest
import torch
import torch._dynamo
from torch import nn

from lvmharness.runtime.execution import CompileFallbackError, ExecOptions, Prepared

CPU = torch.device("cpu")
EAGER = ExecOptions(compile=True, compile_backend="eager")


def tiny() -> nn.Module:
    return nn.Sequential(nn.Conv2d(3, 4, 3), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2)).eval()


def test_dynamo_alone_runs_the_shape_past_its_recompile_limit_eagerly() -> None:
    """The failure being guarded against, shown on torch itself: with dynamic=False each new batch size is a
    recompile of the same frame, and past ``recompile_limit`` Dynamo compiles nothing and runs the frame eagerly."""
    torch._dynamo.reset()
    limit = torch._dynamo.config.recompile_limit
    graphs: list[int] = []

    def counting(gm: torch.fx.GraphModule, example_inputs: list[Any]) -> Any:
        graphs.append(1)
        return gm.forward

    compiled = torch.compile(tiny(), backend=counting, dynamic=False)
    per_shape = []
    with torch.no_grad():
        for batch in range(1, limit + 2):
            before = len(graphs)
            compiled(torch.randn(batch, 3, 8, 8))
            per_shape.append(len(graphs) - before)
    torch._dynamo.reset()
    assert per_shape[:limit] == [1] * limit
    assert per_shape[limit] == 0  # shape limit+1 ran eager, silently


def test_every_shape_compiles_through_prepared_even_past_the_limit() -> None:
    limit = torch._dynamo.config.recompile_limit
    prepared = Prepared(tiny(), CPU, EAGER)
    graphs = []
    for batch in range(1, limit + 3):
        x = prepared.make_input(batch, 8)
        prepared.forward_fn(x)()
        graphs.append(prepared.record_values(x)["compile_graphs_this_shape"])
    assert all(g >= 1 for g in graphs), graphs
    assert prepared.stats.dynamo_resets == 1  # one reset, before shape limit+1
    assert prepared.provenance()["compile_dynamo_resets"] == 1


def test_a_new_compiled_model_resets_dynamo_and_the_old_one_compiles_again() -> None:
    first = Prepared(tiny(), CPU, EAGER)
    x = first.make_input(2, 8)
    first.forward_fn(x)
    compiled_before = first.stats.graphs_compiled
    Prepared(tiny(), CPU, EAGER)  # another model: Dynamo's caches are dropped
    first.forward_fn(x)  # the first model's shape is compiled (and timed apart) again, not inside timed rounds
    assert first.stats.graphs_compiled == compiled_before + 1


class Uncapturable(nn.Module):
    @torch._dynamo.disable
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * 2


def test_a_shape_that_compiles_no_graph_is_refused() -> None:
    prepared = Prepared(Uncapturable(), CPU, EAGER)
    with pytest.raises(CompileFallbackError, match="compiled no graph for input shape 1x3x8x8"):
        prepared.forward_fn(prepared.make_input(1, 8))
