"""The compare-rules table: every key's rule has an entry, every tolerance a Rules field and an lvm compare option."""

from __future__ import annotations

import dataclasses
import typing

from lvmharness.commands.main import build_parser
from lvmharness.store import keys
from lvmharness.store.rules import RULES, TOLERANCES, Rules


def test_every_rule_a_key_can_name_has_one_entry() -> None:
    assert set(RULES) == set(typing.get_args(keys.Rule))
    assert {k.rule for k in keys.KEYS} <= set(RULES)


def test_each_tolerance_is_a_rules_field_with_its_default_and_a_compare_option() -> None:
    fields = {f.name: f.default for f in dataclasses.fields(Rules)}
    used = {spec.tolerance for spec in RULES.values() if spec.tolerance is not None}
    assert used == set(TOLERANCES)
    # The defaults as the README states them: 10 % slowdown, 5 % memory growth, half a point of accuracy.
    assert {name: fields[name] for name in TOLERANCES} == {"latency_threshold": 0.10, "mem_tolerance": 0.05,
                                                           "acc_tolerance": 0.5}
    args = build_parser(["compare"]).parse_args(["compare", "a", "b", "--mem-tolerance", "0.2"])
    assert (args.latency_threshold, args.mem_tolerance, args.acc_tolerance) == (0.10, 0.2, 0.5)


def test_only_counted_rules_pool_the_latest_value() -> None:
    # The history gate pools N runs: counted values (exact) take the latest run's, measured ones the median.
    assert [name for name, spec in RULES.items() if spec.pooled == "latest"] == ["exact"]
    assert RULES["flag"].decide is None and RULES["none"].decide is None
