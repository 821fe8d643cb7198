"""The one table of value keys, and the readers that take their lists from it."""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

import jsonschema
import numpy as np
import pytest
import torch

from lvmharness.measure.budget import TimingConfig
from lvmharness.measure.latency import ForwardCase, Timer, forward_latency
from lvmharness.report.tables import CSV_COLUMNS, DERIVED_COLUMNS, IDENTITY_COLUMNS, csv_rows
from lvmharness.runtime.execution import ExecOptions, Prepared
from lvmharness.store import keys
from lvmharness.store.compare import compare_records
from lvmharness.store.record_schema import record_schema
from lvmharness.store.records import make_record


def test_every_key_is_declared_once_with_a_consistent_rule() -> None:
    assert len(keys.BY_NAME) == len(keys.KEYS)
    for k in keys.KEYS:
        # Units are in the names (the project's convention): the table's unit must agree with the suffix.
        for suffix, unit in (("_ms", "ms"), ("_bytes", "bytes"), ("_s", "s"), ("_img_s", "img/s")):
            if k.name.endswith(suffix) or f"{suffix}_" in k.name:
                assert k.unit == unit or (suffix == "_s" and k.unit in ("img/s", "FLOP/s")), k
        if k.rule == "samples":
            assert k.samples in keys.BY_NAME and keys.BY_NAME[k.samples].kind == "list", k
        if k.rule in ("samples", "relative"):
            assert k.measured, k  # a timed or memory value depends on the machine
        if k.rule == "exact":
            assert not k.measured, k  # counted, not measured


def test_a_bad_declaration_fails_on_import() -> None:
    with pytest.raises(ValueError, match="samples"):
        keys.Key("x_ms", "ms", "doc", "lower", "samples")
    with pytest.raises(ValueError, match="direction"):
        keys.Key("y_bytes", "bytes", "doc", None, "relative")


def test_the_shipped_schema_and_the_table_agree() -> None:
    shipped = json.loads(resources.files("lvmharness").joinpath("schema/result-v1.schema.json").read_text())
    full = record_schema()
    # The file does not list value keys of its own (they would drift from the table) ...
    assert "properties" not in shipped["properties"]["values"]
    # ... the schema readers use has exactly the table's keys, each with its declared type.
    props = full["properties"]["values"]["properties"]
    assert set(props) == set(keys.BY_NAME)
    assert props["contended"]["type"] == "boolean" and props["samples"]["type"] == "array"
    assert props["latency_ms_p95"]["type"] == ["number", "null"] and "[ms]" in props["latency_ms_p95"]["description"]
    jsonschema.Draft202012Validator.check_schema(full)
    validator = jsonschema.Draft202012Validator(full)
    ok = make_record(run_id="r", metric="latency", model="m", alias="m", family="vit", device="cpu", dtype="fp32",
                     batch_size=1, img_size=32, values={"latency_ms_p95": 1.5, "contended": False, "unknown_key": 3})
    assert not list(validator.iter_errors(ok))
    assert list(validator.iter_errors({**ok, "values": {"contended": "yes"}}))


def test_readers_take_their_lists_from_the_table() -> None:
    csv_keys = [k.name for k in keys.KEYS if k.csv]
    assert (*IDENTITY_COLUMNS, *DERIVED_COLUMNS, *csv_keys, "error") == CSV_COLUMNS
    assert tuple(k.name for k in keys.KEYS if k.extra_info) == keys.EXTRA_INFO_KEYS
    # The new key reaches the CSV, extra_info and the schema with no other edit.
    assert "latency_ms_p95" in CSV_COLUMNS and "latency_ms_p95" in keys.EXTRA_INFO_KEYS
    rec = make_record(run_id="r", metric="latency", model="m", alias="m", family="vit", device="cpu", dtype="fp32",
                      batch_size=1, img_size=32, values={"latency_ms_p95": 2.5})
    assert csv_rows([rec])[0]["latency_ms_p95"] == 2.5


def test_an_undeclared_key_is_kept_but_never_compared() -> None:
    def one(v: Any) -> dict[str, Any]:
        return make_record(run_id="r", metric="flops", model="m", alias="m", family="vit", device="cpu",
                           dtype="fp32", batch_size=1, img_size=32, values={"macs": 10, "my_new_thing": v})

    findings = compare_records([one(1)], [one(2)]).findings
    assert [f.key for f in findings] == ["macs"]


def test_forward_latency_writes_p95_by_the_type_7_percentile() -> None:
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 4))
    timer = Timer(torch.device("cpu"), TimingConfig(warmup_rounds=1, warmup_s=0.0, budget_s=0.0, min_rounds=7,
                                                    max_rounds=7))
    cpu = torch.device("cpu")
    values = forward_latency(Prepared(model, cpu, ExecOptions()), ForwardCase(2, 8), timer).values()
    samples = values["samples"]
    assert len(samples) == 7
    # numpy's default percentile method is the same linear interpolation (Hyndman & Fan type 7): a second tool.
    assert values["latency_ms_p95"] == pytest.approx(float(np.percentile(samples, 95)), rel=1e-12)
    # By hand for 7 sorted samples: position (7 - 1) * 0.95 = 5.7, so x[5] + 0.7 * (x[6] - x[5]).
    x = sorted(samples)
    assert values["latency_ms_p95"] == pytest.approx(x[5] + 0.7 * (x[6] - x[5]), rel=1e-12)
