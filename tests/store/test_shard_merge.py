"""Shard plans and merging run folders (library level; the bench-level runs are in test_parallel_benches.py)."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from lvmharness.bench.shard import ShardSpecError, case_cost, imbalance, loads, parse_shard, plan
from lvmharness.commands.main import main
from lvmharness.store.loading import load_env, load_records
from lvmharness.store.merge import MergeError, merge_runs
from lvmharness.store.run_folder import RunStore
from tests.helpers.records import record

FP_A, FP_B = "aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"


@pytest.mark.parametrize(("text", "k", "n"), [("1/3", 1, 3), ("3/3", 3, 3), (" 2 / 5 ", 2, 5), ("1/1", 1, 1)])
def test_shard_spec_parses(text: str, k: int, n: int) -> None:
    shard = parse_shard(text)
    assert (shard.index, shard.count) == (k, n) and str(shard) == f"{k}/{n}"


@pytest.mark.parametrize("bad", ["0/3", "4/3", "1/0", "3", "a/b", "1/3/4", "-1/3", ""])
def test_bad_shard_specs_say_what_is_valid(bad: str) -> None:
    with pytest.raises(ShardSpecError, match=r"K/N|between 1 and N"):
        parse_shard(bad)


def test_case_cost_is_macs_times_batch_times_the_metric_weight() -> None:
    # ViT-B/16 at 224: 17.56 GMACs per image (Dosovitskiy et al. 2021 / DeiT table 1 list 17.6 "GFLOPs", i.e. MACs).
    vit = 17_563_828_224
    assert case_cost("latency", vit, 8) == pytest.approx(8 * case_cost("latency", vit, 1))
    assert case_cost("latency", vit, 1) / case_cost("flops", vit, 1) == pytest.approx(20.0)
    assert case_cost("instance", vit, None) == case_cost("instance", vit, 1)  # no batch axis: one image


def test_plan_is_disjoint_covering_deterministic_and_balanced() -> None:
    rng = random.Random(7)
    costs = {f"case-{i}": float(rng.choice([1, 8, 64]) * rng.randint(1, 50)) for i in range(200)}
    for n in (1, 2, 3, 7):
        assignment = plan(costs, n)
        assert set(assignment) == set(costs) and set(assignment.values()) <= set(range(1, n + 1))
        # Same plan whatever order the costs arrive in (every shard process must compute the same plan).
        shuffled = dict(sorted(costs.items(), key=lambda kv: rng.random()))
        assert plan(shuffled, n) == assignment
        shard_loads = loads(costs, assignment, n)
        assert sum(shard_loads) == pytest.approx(sum(costs.values()))
        # LPT bound (Graham 1969): no shard exceeds the mean load by more than the largest single case.
        assert max(shard_loads) <= sum(costs.values()) / n + max(costs.values())


def test_plan_balances_cost_not_count() -> None:
    # One case as costly as the ten others together: a count split (6/5) would give 15:5 (3x); by cost it is 10:10.
    costs = {"big": 10.0, **{f"small-{i}": 1.0 for i in range(10)}}
    assignment = plan(costs, 2)
    assert loads(costs, assignment, 2) == [10.0, 10.0]
    assert [k for k, v in assignment.items() if v == assignment["big"]] == ["big"]
    assert imbalance([10.0, 10.0]) == 1.0 and imbalance([3.0, 2.0]) == 1.5 and imbalance([1.0, 0.0]) == float("inf")


def shard_run(root: Path, run_id: str, cases: list[str], fp: str = FP_A, env: dict[str, Any] | None = None) -> Path:
    store = RunStore(root, run_id, fingerprint=fp)
    store.write_env(env or {"shard_of": str(root), "fingerprint": fp})
    for c in cases:
        store.add(record(run_id, c, values={"latency_ms_p50": 1.0}))
    store.close()
    return store.run_dir


def test_merge_of_shards_is_their_union_and_keeps_each_shards_env(tmp_path: Path) -> None:
    runs = [shard_run(tmp_path / f"s{k}", "sweep-1", [f"c{k}-{i}" for i in range(3)]) for k in range(3)]
    # A shard killed mid-write: a finished record and an unfinished tail. The finished one must arrive.
    with next((runs[2] / "records").glob("*.jsonl")).open("ab") as fh:
        fh.write(b'{"schema": 1, "case_id": "torn')
    out = tmp_path / "merged"
    assert main(["merge", *map(str, runs), "-o", str(out)]) == 0
    records = load_records(out)
    assert sorted(r["case_id"] for r in records) == sorted(f"c{k}-{i}" for k in range(3) for i in range(3))
    assert len(json.loads((out / "results.json").read_text())) == 9
    sources = json.loads((out / "sources.json").read_text())
    assert [s["env"]["shard_of"] for s in sources] == [str(tmp_path / f"s{k}") for k in range(3)]
    assert [s["records"] for s in sources] == [3, 3, 3]
    env = load_env(out)
    assert env is not None and len(env["writers"]) == 3


def test_same_case_on_the_same_machine_twice_is_an_error_naming_it(tmp_path: Path, capsys: Any) -> None:
    a = shard_run(tmp_path / "a", "r", ["x", "y"])
    b = shard_run(tmp_path / "b", "r", ["y", "z"])
    out = tmp_path / "merged"
    with pytest.raises(MergeError, match=r"1 case id\(s\).*\n  y \(machine aaaaaaaaaaaaaaaa\) in .*/a/r, .*/b/r"):
        merge_runs([a, b], out)
    assert not out.exists()  # nothing written half
    assert main(["merge", str(a), str(b), "-o", str(out)]) == 2
    assert "lvm merge: error:" in capsys.readouterr().err


def test_same_case_on_two_machines_is_two_experiments(tmp_path: Path) -> None:
    a = shard_run(tmp_path / "a", "r", ["x"], fp=FP_A)
    b = shard_run(tmp_path / "b", "r", ["x"], fp=FP_B)
    result = merge_runs([a, b], tmp_path / "m")
    records = load_records(result.out)
    assert sorted(r["fingerprint"] for r in records) == [FP_A, FP_B]
    env = load_env(result.out)
    assert env is not None and env["writer_differences"]  # the second machine's env is kept, not dropped


def test_merge_takes_a_legacy_run_folder_and_refuses_a_non_empty_target(tmp_path: Path) -> None:
    legacy = tmp_path / "old" / "r0"
    legacy.mkdir(parents=True)
    (legacy / "results.json").write_text(json.dumps([record("r0", "old-1", values={"latency_ms_p50": 1.0})]))
    (legacy / "env.json").write_text(json.dumps({"torch": "2.0"}))
    new = shard_run(tmp_path / "new", "r1", ["new-1"])
    taken = tmp_path / "taken"
    taken.mkdir()
    (taken / "keep.txt").write_text("mine")
    with pytest.raises(MergeError, match="not an empty folder"):
        merge_runs([legacy, new], taken)
    assert (taken / "keep.txt").read_text() == "mine"
    with pytest.raises(MergeError, match="not a run folder"):
        merge_runs([tmp_path / "nope"], tmp_path / "m")
    result = merge_runs([legacy, new], tmp_path / "m")
    assert sorted(r["case_id"] for r in load_records(result.out)) == ["new-1", "old-1"]
    sources = json.loads((result.out / "sources.json").read_text())
    assert sources[0]["env"] == {"torch": "2.0"}
