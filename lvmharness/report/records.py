"""The records a report draws: read from run folders, filtered to good measurements, and the counted costs (params,
GMACs per image) of each model found anywhere in them. Torch-free."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lvmharness.store.loading import load_env, load_records

Record = dict[str, Any]


def load_runs(paths: Sequence[Path | str]) -> tuple[list[Record], list[Record]]:
    """(records, env documents) of every run folder or results file; every input is read and checked before the
    caller writes anything."""
    records: list[Record] = []
    envs: list[Record] = []
    for p in paths:
        path = Path(p)
        records += load_records(path)
        env = load_env(path)
        if env is not None:
            envs.append(env)
    return records, envs


def ok(records: Sequence[Record], metric: str) -> list[Record]:
    """The records of ``metric`` that measured something (status ``ok``)."""
    return [r for r in records if r.get("metric") == metric and r.get("status") == "ok"]


def static_by_model(records: Sequence[Record]) -> dict[tuple[str, int | None], dict[str, float]]:
    """params and GMACs per image per (model, size), from flops records or the latency records' own counts."""
    out: dict[tuple[str, int | None], dict[str, float]] = {}
    for r in records:
        v = r["values"]
        key = (r["alias"], r["img_size"])
        if r["status"] != "ok":
            continue
        if r["metric"] == "flops":
            out.setdefault(key, {}).update(params=v["params"], gmacs=v["macs"] / 1e9)
        elif r["metric"] == "latency" and "macs" in v and r["batch_size"]:
            out.setdefault(key, {}).setdefault("gmacs", v["macs"] / r["batch_size"] / 1e9)
        elif r["metric"] == "train_result":
            out.setdefault(key, {}).setdefault("params", v.get("params"))
            out.setdefault(key, {}).setdefault("gmacs", v.get("gmacs"))
    return out
