"""lvm compare on constructed records: each rule, its direction, and the exit code."""

from __future__ import annotations

import itertools
import json
import random
import statistics
from pathlib import Path
from typing import Any

import pytest

from lvmharness.commands.main import build_parser, main
from lvmharness.core.fileio import atomic_write_json
from lvmharness.store import keys
from lvmharness.store.compare import Comparison, baseline_records, compare_records
from lvmharness.store.records import make_record
from lvmharness.store.rules import (
    CompareError,
    Finding,
    Rules,
    decide_points,
    decide_relative,
    decide_samples,
    median_ratio_ci,
)


def _one(key: keys.Key, value: Any) -> dict[str, Any]:
    """The part of a record a value rule reads: its values."""
    return {"values": {key.name: value}}


def _relative(case: str, key: keys.Key, bv: Any, nv: Any, rules: Rules) -> Finding:
    return decide_relative(case, key, _one(key, bv), _one(key, nv), rules)


def _points(case: str, key: keys.Key, bv: Any, nv: Any, rules: Rules) -> Finding:
    return decide_points(case, key, _one(key, bv), _one(key, nv), rules)


def rec(case: str = "vit-cpu-fp32-b1-224", metric: str = "latency", status: str = "ok",
        **values: Any) -> dict[str, Any]:
    r = make_record(run_id="r", metric=metric, model="vit_base_patch16_224", alias="vit", family="vit", device="cpu",
                    dtype="fp32", batch_size=1, img_size=224, status=status,
                    error=None if status == "ok" else "CUDA out of memory", values=values)
    r["case_id"] = f"{metric}[{case}]"
    return r


def samples(center: float, spread: float, n: int = 40, seed: int = 1) -> list[float]:
    rng = random.Random(seed)
    return [center * (1 + rng.uniform(-spread, spread)) for _ in range(n)]


def verdicts(base: list[dict[str, Any]], new: list[dict[str, Any]]) -> dict[tuple[str, str], str]:
    return {(f.case_id, f.key): f.verdict for f in compare_records(base, new).findings}


def test_a_changed_mac_count_is_a_regression() -> None:
    base = [rec(metric="flops", macs=17_563_828_224, params=86_567_656)]
    new = [rec(metric="flops", macs=17_563_828_225, params=86_567_656)]
    result = compare_records(base, new)
    assert [(f.key, f.verdict) for f in result.regressions] == [("macs", "regression")]


def test_latency_within_noise_passes() -> None:
    base = [rec(latency_ms_p50=10.0, samples=samples(10.0, 0.15, seed=1))]
    new = [rec(latency_ms_p50=10.4, samples=samples(10.4, 0.15, seed=2))]
    result = compare_records(base, new)
    assert not result.regressions
    assert verdicts(base, new)[("latency[vit-cpu-fp32-b1-224]", "latency_ms_p50")] == "noise"


def test_latency_plus_30_percent_with_tight_samples_fails() -> None:
    base = [rec(latency_ms_p50=10.0, samples=samples(10.0, 0.02, seed=1))]
    new = [rec(latency_ms_p50=13.0, samples=samples(13.0, 0.02, seed=2))]
    (finding,) = compare_records(base, new).regressions
    assert finding.key == "latency_ms_p50" and "slower" in finding.detail
    ratio, lo, hi = median_ratio_ci(samples(10.0, 0.02, seed=1), samples(13.0, 0.02, seed=2), Rules())
    assert 1.25 < lo <= ratio <= hi < 1.35


# Eight rounds spread over a factor of 19 (a machine that stalls now and then): the median is 10.0 by construction.
NOISY = [1.0, 3.0, 6.0, 9.0, 11.0, 14.0, 17.0, 19.0]


def test_plus_30_percent_with_very_noisy_samples_is_not_proven() -> None:
    # NEW is BASE scaled by 1.3 exactly, so the ratio of medians is 1.3 by construction: the point estimate is a 30 %
    # slowdown, far past the 10 % threshold. But with 8 samples this spread, a resampled median moves anywhere in
    # the middle of the list (3..17), so the bootstrap interval reaches well below 1.1: not proven.
    base_s, new_s = NOISY, [1.3 * v for v in NOISY]
    ratio, lo, hi = median_ratio_ci(base_s, new_s, Rules())
    assert ratio == pytest.approx(1.3) and lo < 1.1 < hi
    base = [rec(latency_ms_p50=10.0, samples=base_s)]
    new = [rec(latency_ms_p50=13.0, samples=new_s)]
    assert verdicts(base, new)[("latency[vit-cpu-fp32-b1-224]", "latency_ms_p50")] == "noise"


def test_minus_15_percent_not_proven_is_no_improvement() -> None:
    # Ratio of medians 0.85 by construction (past the 10 % threshold), but the interval's high end is above 0.9:
    # an improvement needs the whole interval below 1 - threshold.
    base_s, new_s = NOISY, [0.85 * v for v in NOISY]
    ratio, lo, hi = median_ratio_ci(base_s, new_s, Rules())
    assert ratio == pytest.approx(0.85) and lo < 0.9 < hi
    base = [rec(latency_ms_p50=10.0, samples=base_s)]
    new = [rec(latency_ms_p50=8.5, samples=new_s)]
    assert verdicts(base, new)[("latency[vit-cpu-fp32-b1-224]", "latency_ms_p50")] == "noise"


@pytest.mark.parametrize(("new_p50", "verdict"), [(10.5, "noise"), (10.0, "same"), (11.5, "regression")])
def test_without_samples_the_point_ratio_meets_the_threshold(new_p50: float, verdict: str) -> None:
    # No raw samples (an old record): 10.5 / 10.0 = 1.05 is inside the 10 % threshold, 1.15 is past it.
    base, new = [rec(latency_ms_p50=10.0)], [rec(latency_ms_p50=new_p50)]
    assert verdicts(base, new)[("latency[vit-cpu-fp32-b1-224]", "latency_ms_p50")] == verdict


def test_a_re_run_case_the_last_record_wins() -> None:
    first, last = rec(metric="flops", macs=11), rec(metric="flops", macs=10)
    base = [rec(metric="flops", macs=10)]
    assert not compare_records(base, [first, last]).regressions
    assert compare_records(base, [last, first]).regressions
    assert not compare_records([first, last], base).regressions


def test_faster_is_an_improvement() -> None:
    base = [rec(latency_ms_p50=10.0, samples=samples(10.0, 0.02))]
    new = [rec(latency_ms_p50=7.0, samples=samples(7.0, 0.02, seed=5))]
    assert verdicts(base, new)[("latency[vit-cpu-fp32-b1-224]", "latency_ms_p50")] == "improvement"


def test_ok_to_oom_fails_and_oom_to_ok_improves() -> None:
    base, new = [rec(metric="memory_train_step")], [rec(metric="memory_train_step", status="oom")]
    assert [f.key for f in compare_records(base, new).regressions] == ["status"]
    assert not compare_records(new, base).regressions


def test_a_case_on_one_side_is_reported_not_a_crash() -> None:
    base = [rec(case="a", latency_ms_p50=1.0), rec(case="b", latency_ms_p50=1.0)]
    new = [rec(case="a", latency_ms_p50=1.0), rec(case="c", latency_ms_p50=1.0)]
    v = verdicts(base, new)
    assert v[("latency[b]", "(case)")] == "missing" and v[("latency[c]", "(case)")] == "added"
    assert not compare_records(base, new).regressions


def test_memory_and_accuracy_rules() -> None:
    base = [rec(metric="memory_inference", rss_peak_delta_bytes=100 * 2**20),
            rec(metric="train_result", top1=80.0, top5=95.0)]
    new = [rec(metric="memory_inference", rss_peak_delta_bytes=112 * 2**20),
           rec(metric="train_result", top1=78.0, top5=95.2)]
    v = verdicts(base, new)
    assert v[("memory_inference[vit-cpu-fp32-b1-224]", "rss_peak_delta_bytes")] == "regression"
    assert v[("train_result[vit-cpu-fp32-b1-224]", "top1")] == "regression"
    assert v[("train_result[vit-cpu-fp32-b1-224]", "top5")] == "noise"


def test_cli_exit_codes_and_metric_filter(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base, new = tmp_path / "base.json", tmp_path / "new.json"
    atomic_write_json(base, [rec(metric="flops", macs=10), rec(latency_ms_p50=1.0, samples=samples(1.0, 0.01))])
    atomic_write_json(new, [rec(metric="flops", macs=11), rec(latency_ms_p50=2.0, samples=samples(2.0, 0.01))])
    assert main(["compare", str(base), str(new)]) == 1
    out = capsys.readouterr()
    assert "REGRESSION" in out.out and "FAIL: 2 regression(s)" in out.err
    assert main(["compare", str(base), str(base)]) == 0
    atomic_write_json(new, [rec(metric="flops", macs=10), rec(latency_ms_p50=2.0, samples=samples(2.0, 0.01))])
    assert main(["compare", str(base), str(new), "--metric", "flops"]) == 0


def test_baseline_keeps_only_deterministic_values() -> None:
    recs = [rec(metric="flops", macs=10, params=3, gmacs=1e-8), rec(latency_ms_p50=1.0)]
    (only,) = baseline_records(recs)
    assert only["values"] == {"macs": 10, "params": 3} and "created_utc" not in only


def test_the_committed_baseline_matches_the_smoke_models() -> None:
    """The CI gate's baseline is current: counting the smoke models now gives the committed numbers."""
    from lvmharness.measure.flops import analyze
    from lvmharness.store.loading import load_records

    path = Path(__file__).resolve().parents[2] / "benches" / "baseline" / "smoke.json"
    for r in load_records(path):
        if r["metric"] == "flops":
            report = analyze(r["alias"], img_size=r["img_size"])
            assert (report.params, report.macs, report.macs_fwd_bwd) == (
                r["values"]["params"], r["values"]["macs"], r["values"]["macs_fwd_bwd"]), r["case_id"]


def _write(tmp_path: Path, name: str, records: list[dict[str, Any]]) -> str:
    path = tmp_path / name
    atomic_write_json(path, records)
    return str(path)


TIGHT_10 = [10.0 * (1 + 0.001 * i) for i in range(-10, 11)]  # 21 rounds within 1 %: median 10.0


@pytest.mark.parametrize(
    ("key", "base_value", "new_value", "option", "loose", "strict"),
    [
        # 13.0 / 10.0 = +30 % with tight samples: past the default 10 %, inside 50 %.
        ("latency", 10.0, 13.0, "--latency-threshold", "0.5", "0.2"),
        # 112 / 100 MiB = +12 %: past the default 5 %, inside 20 %.
        ("memory", 100, 112, "--mem-tolerance", "0.2", "0.1"),
        # 80.0 -> 78.0 = -2 points: past the default 0.5, inside 3.
        ("accuracy", 80.0, 78.0, "--acc-tolerance", "3", "1.5"),
    ],
)
def test_cli_tolerance_options_are_used(tmp_path: Path, key: str, base_value: float, new_value: float, option: str,
                                        loose: str, strict: str) -> None:
    def one(v: float) -> dict[str, Any]:
        if key == "latency":
            return rec(latency_ms_p50=v, samples=[t * v / 10.0 for t in TIGHT_10])
        if key == "memory":
            return rec(metric="memory_inference", rss_peak_delta_bytes=int(v) * 2**20)
        return rec(metric="train_result", top1=v)

    base, new = _write(tmp_path, "b.json", [one(base_value)]), _write(tmp_path, "n.json", [one(new_value)])
    assert main(["compare", base, new]) == 1
    assert main(["compare", base, new, option, loose]) == 0
    assert main(["compare", base, new, option, strict]) == 1
    # And the other way: a change inside the default that a stricter option turns into a regression.
    small = {"latency": 10.5, "memory": 103, "accuracy": 79.7}[key]
    new = _write(tmp_path, "n.json", [one(small)])
    assert main(["compare", base, new]) == 0
    assert main(["compare", base, new, option, "0.01" if key != "accuracy" else "0.1"]) == 1


@pytest.mark.parametrize("option", ["--latency-threshold", "--mem-tolerance", "--acc-tolerance"])
@pytest.mark.parametrize("value", ["nan", "inf", "-0.1", "-inf", "ten"])
def test_non_finite_or_negative_thresholds_are_exit_2(tmp_path: Path, option: str, value: str,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    base = _write(tmp_path, "b.json", [rec(metric="flops", macs=10)])
    with pytest.raises(SystemExit) as exc:
        main(["compare", base, base, f"{option}={value}"])
    assert exc.value.code == 2
    assert f"{option}: must be a finite number >= 0" in capsys.readouterr().err


def test_rules_refuse_nan_in_the_library_too() -> None:
    with pytest.raises(ValueError, match="latency_threshold must be a finite number >= 0"):
        Rules(latency_threshold=float("nan"))
    with pytest.raises(ValueError, match="mem_tolerance"):
        Rules(mem_tolerance=-1)


def test_an_unknown_metric_is_exit_2_naming_what_exists(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    slow = [t * 3 for t in TIGHT_10]
    base = _write(tmp_path, "b.json", [rec(latency_ms_p50=10.0, samples=TIGHT_10)])
    new = _write(tmp_path, "n.json", [rec(latency_ms_p50=30.0, samples=slow)])
    assert main(["compare", base, new]) == 1
    capsys.readouterr()
    assert main(["compare", base, new, "--metric", "latancy"]) == 2
    err = capsys.readouterr().err
    assert "'latancy'" in err and "latency" in err.split("have:")[1]


@pytest.mark.parametrize(
    ("base", "new"),
    [
        ([rec(case="a", latency_ms_p50=1.0)], [rec(case="b", latency_ms_p50=1.0)]),  # no common case
        ([rec(status="oom")], [rec(status="oom")]),  # both failed: no value to compare
        ([rec(gmacs=1.0)], [rec(gmacs=2.0)]),  # only keys without a compare rule
    ],
)
def test_a_comparison_that_decides_nothing_is_exit_2(tmp_path: Path, base: list[dict[str, Any]],
                                                      new: list[dict[str, Any]],
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["compare", _write(tmp_path, "b.json", base), _write(tmp_path, "n.json", new)]) == 2
    assert "nothing was compared" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([{"schema": 1}], "record 0: field 'run_id' is missing"),
        ([{**rec(), "values": None}], "record 0 (latency[vit-cpu-fp32-b1-224]): field 'values': None is not of type"),
        ([rec(), {**rec(), "status": "fine"}], "record 1 (latency[vit-cpu-fp32-b1-224]): field 'status'"),
        ([{**rec(), "values": {"latency_ms_p50": "fast"}}], "field 'values.latency_ms_p50'"),
        ([{**rec(), "values": {"contended": 1}}], "field 'values.contended': 1 is not of type 'boolean'"),
        ([7], "expected a JSON list of record objects"),
    ],
)
def test_malformed_records_name_file_record_and_field(tmp_path: Path, content: list[Any], expected: str,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(content))
    good = _write(tmp_path, "good.json", [rec(metric="flops", macs=10)])
    for argv in (["compare", good, str(bad)], ["compare", str(bad), good], ["report", str(bad)]):
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert str(bad) in err and expected in err, err
        assert "Traceback" not in err


def test_a_contended_pair_is_inconclusive_never_a_regression(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    slow = [t * 3 for t in TIGHT_10]
    base = [rec(latency_ms_p50=10.0, samples=TIGHT_10, rss_peak_bytes=100), rec(metric="flops", macs=10)]
    for busy_side in ("base", "new"):
        new = [rec(latency_ms_p50=30.0, samples=slow, rss_peak_bytes=200), rec(metric="flops", macs=10)]
        (new if busy_side == "new" else base)[0]["values"]["contended"] = True
        v = verdicts(base, new)
        assert v[("latency[vit-cpu-fp32-b1-224]", "latency_ms_p50")] == "inconclusive"
        assert v[("latency[vit-cpu-fp32-b1-224]", "rss_peak_bytes")] == "inconclusive"
        assert v[("flops[vit-cpu-fp32-b1-224]", "macs")] == "same"
        assert main(["compare", _write(tmp_path, "b.json", base), _write(tmp_path, "n.json", new)]) == 0
        assert "inconclusive" in capsys.readouterr().out
        base[0]["values"].pop("contended", None)
    # Only contended pairs: nothing decided, so the gate does not pass.
    assert main(["compare", _write(tmp_path, "b.json", base[:1]), _write(tmp_path, "n.json", new[:1])]) == 2


def test_records_from_two_machines_compare_counts_but_not_times(tmp_path: Path) -> None:
    slow = [t * 3 for t in TIGHT_10]
    base = [rec(latency_ms_p50=10.0, samples=TIGHT_10, macs=10)]
    new = [rec(latency_ms_p50=30.0, samples=slow, macs=11)]
    base[0]["fingerprint"], new[0]["fingerprint"] = "0123456789abcdef", "fedcba9876543210"
    v = verdicts(base, new)
    assert v[("latency[vit-cpu-fp32-b1-224]", "latency_ms_p50")] == "cross-machine"
    assert v[("latency[vit-cpu-fp32-b1-224]", "macs")] == "regression"  # counts compare everywhere
    new[0]["values"]["macs"] = 10
    b, n = _write(tmp_path, "b.json", base), _write(tmp_path, "n.json", new)
    assert main(["compare", b, n]) == 0
    assert main(["compare", b, n, "--cross-machine"]) == 1
    # A record without a fingerprint is on an unknown machine: not the same as a known one.
    del base[0]["fingerprint"]
    assert verdicts(base, new)[("latency[vit-cpu-fp32-b1-224]", "latency_ms_p50")] == "cross-machine"
    del new[0]["fingerprint"]
    assert verdicts(base, new)[("latency[vit-cpu-fp32-b1-224]", "latency_ms_p50")] == "regression"


@pytest.mark.parametrize(
    ("metric", "key", "base_value", "new_value", "verdict"),
    [
        # memory, relative tolerance 5 %: -10 % improves, +2 % is noise, equal is the same, +12 % regresses.
        ("memory_inference", "rss_peak_bytes", 100, 90, "improvement"),
        ("memory_inference", "rss_peak_bytes", 100, 102, "noise"),
        ("memory_inference", "rss_peak_bytes", 100, 100, "same"),
        ("memory_inference", "rss_peak_bytes", 100, 112, "regression"),
        ("memory_inference", "rss_peak_bytes", 0, 0, "same"),  # no relative change from 0
        ("memory_inference", "rss_peak_bytes", 0, 5, "noise"),
        # accuracy, 0.5 points: +1 improves, +0.3 is noise, equal is the same, -0.6 regresses (higher is better).
        ("train_result", "top1", 80.0, 81.0, "improvement"),
        ("train_result", "top1", 80.0, 80.3, "noise"),
        ("train_result", "top1", 80.0, 80.0, "same"),
        ("train_result", "top1", 80.0, 79.4, "regression"),
        # counts: equal is the same, any change a regression, in either direction.
        ("flops", "macs", 10, 10, "same"),
        ("flops", "macs", 10, 9, "regression"),
        # latency without samples from a base of 0: an infinite ratio, a regression.
        ("latency", "latency_ms_p50", 0.0, 1.0, "regression"),
    ],
)
def test_each_rule_direction_and_the_values_it_reports(metric: str, key: str, base_value: float, new_value: float,
                                                       verdict: str) -> None:
    base: dict[str, Any] = {key: base_value}
    new: dict[str, Any] = {key: new_value}
    (finding,) = compare_records([rec(metric=metric, **base)], [rec(metric=metric, **new)]).findings
    assert (finding.key, finding.verdict) == (key, verdict)
    assert (finding.base, finding.new) == (base_value, new_value)


def test_three_samples_a_side_are_enough_for_the_interval() -> None:
    # Three tight rounds on each side, 2x slower: the interval path decides (its detail names the CI), and the
    # finding carries the p50 values, not the samples.
    base = [rec(latency_ms_p50=10.0, samples=[9.9, 10.0, 10.1])]
    new = [rec(latency_ms_p50=20.0, samples=[19.8, 20.0, 20.2])]
    (finding,) = compare_records(base, new).findings
    assert finding.verdict == "regression" and "95% CI" in finding.detail and finding.detail.startswith("slower")
    assert (finding.base, finding.new) == (10.0, 20.0)
    two = compare_records([rec(latency_ms_p50=10.0, samples=[9.9, 10.1])], [rec(latency_ms_p50=20.0,
                                                                               samples=[19.8, 20.2])]).findings
    assert "no usable raw samples" in two[0].detail  # two rounds are too few for a bootstrap: the point ratio decides


def test_an_improvement_says_faster_and_carries_the_values() -> None:
    base = [rec(latency_ms_p50=10.0, samples=TIGHT_10)]
    new = [rec(latency_ms_p50=7.0, samples=[t * 0.7 for t in TIGHT_10])]
    (finding,) = compare_records(base, new).findings
    assert finding.verdict == "improvement" and finding.detail.startswith("faster")
    assert (finding.base, finding.new) == (10.0, 7.0)


# --- the rules at their boundaries, the text a user reads, and the CLI's options ------------------------------------
#
# Thresholds of 0.25 and tolerances of 0.5 points are exact in binary floating point; 5/4 and 3/4 land on exactly
# the same double as 1 + 0.25 and 1 - 0.25, and the memory rule's (105 - 100) / 100 on the same double as 0.05:
# a value AT a boundary is not past it.

P50 = ("latency[vit-cpu-fp32-b1-224]", "latency_ms_p50")


def one_finding(base: dict[str, Any], new: dict[str, Any], rules: Rules | None = None) -> Finding:
    (finding,) = compare_records([base], [new], rules).findings
    assert finding.case_id == new["case_id"]
    return finding


def lat(p50: float, raw: list[Any] | None = None) -> dict[str, Any]:
    return rec(latency_ms_p50=p50) if raw is None else rec(latency_ms_p50=p50, samples=raw)


# Three rounds a side make every resampled median one of the three values. With BASE three times 10.0, the ratio of
# medians is new/10 exactly; NEW = [a, b, c] gives ratios a/10, b/10, c/10, the lowest with probability
# P(at least 2 of 3 draws are the lowest) = 3 (1/3)^2 (2/3) + (1/3)^3 = 7/27, the highest likewise: out of 2000
# resamples about 518 each, far more than the 50 below the 2.5 % quantile (index int(0.025 * 1999) = 49) and above
# the 97.5 % one (index 1949). So the 95 % interval is [a/10, c/10] and the point ratio b/10, by hand.
FLAT_10 = [10.0, 10.0, 10.0]


@pytest.mark.parametrize(
    ("new_raw", "verdict", "detail"),
    [
        ([19.0, 20.0, 21.0], "regression", "slower: x2.000, 95% CI [1.900, 2.100], threshold 10%"),
        ([6.0, 7.0, 8.0], "improvement", "faster: x0.700, 95% CI [0.600, 0.800], threshold 10%"),
        ([9.0, 10.0, 11.0], "noise", "within noise/threshold: x1.000, 95% CI [0.900, 1.100], threshold 10%"),
        # The whole interval must be past the threshold: [1.05, 1.15] straddles 1.1, [0.85, 0.95] straddles 0.9.
        ([10.5, 11.0, 11.5], "noise", "within noise/threshold: x1.100, 95% CI [1.050, 1.150], threshold 10%"),
        ([8.5, 9.0, 9.5], "noise", "within noise/threshold: x0.900, 95% CI [0.850, 0.950], threshold 10%"),
        # The point ratio past the threshold is not enough: x1.15 with [1.05, 1.20], x0.85 with [0.80, 0.95].
        ([10.5, 11.5, 12.0], "noise", "within noise/threshold: x1.150, 95% CI [1.050, 1.200], threshold 10%"),
        ([8.0, 8.5, 9.5], "noise", "within noise/threshold: x0.850, 95% CI [0.800, 0.950], threshold 10%"),
        # Just past: the low end 1.11 > 1.1, the high end 0.89 < 0.9.
        ([11.1, 11.5, 12.0], "regression", "slower: x1.150, 95% CI [1.110, 1.200], threshold 10%"),
        ([8.0, 8.5, 8.9], "improvement", "faster: x0.850, 95% CI [0.800, 0.890], threshold 10%"),
    ],
)
def test_the_interval_verdict_and_its_detail_by_hand(new_raw: list[float], verdict: str, detail: str) -> None:
    finding = one_finding(lat(10.0, FLAT_10), lat(new_raw[1], new_raw))
    assert (finding.verdict, finding.detail) == (verdict, detail)
    assert (finding.base, finding.new) == (10.0, new_raw[1])


@pytest.mark.parametrize(
    ("new_raw", "verdict"),
    [
        ([5.0, 5.0, 5.0], "noise"),  # interval [1.25, 1.25]: AT 1 + 0.25, not above it
        ([5.01, 5.01, 5.01], "regression"),
        ([3.0, 3.0, 3.0], "noise"),  # interval [0.75, 0.75]: AT 1 - 0.25, not below it
        ([2.99, 2.99, 2.99], "improvement"),
    ],
)
def test_the_interval_at_the_threshold_is_not_past_it(new_raw: list[float], verdict: str) -> None:
    rules = Rules(latency_threshold=0.25)
    assert one_finding(lat(4.0, [4.0] * 3), lat(new_raw[0], new_raw), rules).verdict == verdict


@pytest.mark.parametrize(
    ("base_p50", "new_p50", "verdict", "detail"),
    [
        (4.0, 5.0, "noise", "x1.250"),  # 5 / 4 = 1.25: at 1 + 0.25, not past it
        (4.0, 5.01, "regression", "x1.252"),
        (4.0, 4.0, "same", "x1.000"),
        (4.0, 2.0, "noise", "x0.500"),  # without samples a speed-up is never claimed
        (0.0, 1.0, "regression", "xinf"),  # from 0: an infinite ratio
    ],
)
def test_without_samples_the_point_ratio_at_the_threshold(base_p50: float, new_p50: float, verdict: str,
                                                          detail: str) -> None:
    finding = one_finding(lat(base_p50), lat(new_p50), Rules(latency_threshold=0.25))
    assert finding.verdict == verdict
    assert finding.detail == f"{detail} (no usable raw samples: compared the point values against the threshold)"


@pytest.mark.parametrize(
    ("base_raw", "new_raw"),
    [
        ([10.0, 10.0, 10.0], [20.0, 20.0]),  # two rounds on NEW only
        ([10.0, 10.0], [20.0, 20.0, 20.0]),  # two rounds on BASE only
        ([10.0, None, 10.0], [20.0, 20.0, 20.0]),  # a non-finite round (stored as null) on BASE
        ([10.0, 10.0, 10.0], [20.0, 20.0, None]),  # ... on NEW
        (None, [20.0, 20.0, 20.0]),  # no samples on BASE
        ([10.0, 10.0, 10.0], None),  # no samples on NEW
        ([], [20.0, 20.0, 20.0]),
    ],
)
def test_the_interval_needs_three_finite_rounds_on_each_side(base_raw: list[Any] | None,
                                                             new_raw: list[Any] | None) -> None:
    finding = one_finding(lat(10.0, base_raw), lat(20.0, new_raw))
    assert finding.verdict == "regression"
    assert finding.detail == "x2.000 (no usable raw samples: compared the point values against the threshold)"


def _reference_interval(base: list[float], new: list[float], confidence: float, resamples: int,
                        seed: int) -> tuple[float, float, float]:
    """The documented, reproducible procedure written out again (a gate's verdict must not change between two runs of
    ``lvm compare`` on the same files, so the exact draws are part of the contract; whether the procedure gets the
    statistics right is checked apart, against the exact bootstrap distribution, below).

    The percentile bootstrap with statistics.median: draw each side's indices
    with random.Random(seed).randrange (BASE first, then NEW, per resample), ratio of the medians, sort, and read
    the ratios at positions int(q * (resamples - 1)) for q = (1 - confidence) / 2 and (1 + confidence) / 2."""
    rng = random.Random(seed)
    ratios = []
    for _ in range(resamples):
        b = [base[rng.randrange(len(base))] for _ in range(len(base))]
        n = [new[rng.randrange(len(new))] for _ in range(len(new))]
        ratios.append(statistics.median(n) / statistics.median(b))
    ratios.sort()
    low_q, high_q = (1 - confidence) / 2, (1 + confidence) / 2
    return (statistics.median(new) / statistics.median(base), ratios[int(low_q * (resamples - 1))],
            ratios[int(high_q * (resamples - 1))])


# Seven and nine rounds of different spread: every resample differs, so the seed, the count and each quantile matter.
SEVEN = [9.1, 10.4, 9.8, 11.9, 10.0, 9.5, 12.6]
NINE = [12.2, 11.1, 13.7, 12.0, 11.6, 14.9, 12.4, 11.8, 13.1]


# Even counts: a median is the mean of two rounds, so the resampled ratios take so many values that neighbours in the
# sorted list differ, and reading one position off shows. With 41 resamples and confidence 0.5 the positions are
# int(0.25 * 40) = 10 and int(0.75 * 40) = 30.
EIGHT = [9.13, 10.41, 9.87, 11.92, 10.05, 9.52, 12.64, 10.77]
TEN = [12.21, 11.13, 13.71, 12.02, 11.65, 14.93, 12.47, 11.81, 13.16, 12.58]


@pytest.mark.parametrize(
    ("base", "new", "rules", "point"),
    [
        (SEVEN, NINE, Rules(), 12.2 / 10.0),
        (SEVEN, NINE, Rules(confidence=0.8, bootstrap=301, seed=7), 12.2 / 10.0),
        (SEVEN, NINE, Rules(confidence=0.5, bootstrap=40, seed=123), 12.2 / 10.0),
        (EIGHT, TEN, Rules(confidence=0.5, bootstrap=41, seed=5), ((12.21 + 12.47) / 2) / ((10.05 + 10.41) / 2)),
    ],
)
def test_the_bootstrap_interval_equals_an_independent_computation(base: list[float], new: list[float], rules: Rules,
                                                                  point: float) -> None:
    expected = _reference_interval(base, new, rules.confidence, rules.bootstrap, rules.seed)
    assert median_ratio_ci(base, new, rules) == pytest.approx(expected, rel=1e-12)
    # Sanity of the reference itself: the point ratio of the medians (sorted by hand above) inside the interval.
    assert expected[0] == pytest.approx(point) and expected[1] <= expected[0] <= expected[2]
    assert expected[1] < expected[2]


def _exact_bootstrap_cdf(base: list[float], new: list[float]) -> list[tuple[float, float]]:
    """The exact bootstrap distribution of median(new*) / median(base*): every ordered resample of a side (n^n of
    them, equally likely) crossed with every one of the other side. Returns (ratio, P(ratio <= it)) at each
    distinct ratio. Four rounds a side: 256 x 256 = 65,536 equally likely ratios, enumerated in milliseconds."""
    def medians(xs: list[float]) -> list[float]:
        return [statistics.median(draw) for draw in itertools.product(xs, repeat=len(xs))]

    ratios = sorted(n / b for b in medians(base) for n in medians(new))
    cdf: list[tuple[float, float]] = []
    for i, r in enumerate(ratios, 1):
        if cdf and cdf[-1][0] == r:
            cdf[-1] = (r, i / len(ratios))
        else:
            cdf.append((r, i / len(ratios)))
    return cdf


def _exact_quantile(cdf: list[tuple[float, float]], q: float) -> float:
    return next(r for r, p in cdf if p >= q)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_the_interval_matches_the_exact_bootstrap_distribution(seed: int) -> None:
    # The statistics, checked without the implementation's draws: with four rounds a side the bootstrap
    # distribution can be enumerated exactly. 2000 resamples estimate its 2.5 % quantile with a standard error of
    # sqrt(0.025 * 0.975 / 2000) = 0.35 %, so the estimate lies between the exact 1 % and 4 % quantiles (over 4
    # standard errors either way), and the 97.5 % one between the exact 96 % and 99 % quantiles. These rounds are
    # chosen so that a 90 % interval would not: its ends lie past the exact 4 % and 96 % quantiles.
    base, new = [9.0, 10.0, 11.5, 13.0], [10.0, 12.5, 13.0, 16.5]
    cdf = _exact_bootstrap_cdf(base, new)
    point, lo, hi = median_ratio_ci(base, new, Rules(seed=seed))
    assert point == ((12.5 + 13.0) / 2) / ((10.0 + 11.5) / 2)  # medians of four: the mean of the middle two
    assert _exact_quantile(cdf, 0.01) <= lo <= _exact_quantile(cdf, 0.04)
    assert _exact_quantile(cdf, 0.96) <= hi <= _exact_quantile(cdf, 0.99)


def test_the_interval_is_reproducible_and_its_seed_matters() -> None:
    # Same files, same verdict: the interval is a function of the samples and the rules. The seed is used: over a
    # few seeds 41 resamples of seven and nine distinct rounds do not all give the same interval.
    rules = Rules(confidence=0.5, bootstrap=41)
    assert median_ratio_ci(SEVEN, NINE, rules) == median_ratio_ci(SEVEN, NINE, rules)
    seeded = {median_ratio_ci(SEVEN, NINE, Rules(confidence=0.5, bootstrap=41, seed=s)) for s in range(5)}
    assert len(seeded) > 1


def test_the_default_rules_are_the_documented_ones() -> None:
    # Documented in the module, the CLI help and the README: 10 % latency, 95 % confidence, 5 % memory, 0.5 points,
    # 2000 resamples seeded with 0, no cross-machine decisions.
    assert (Rules().latency_threshold, Rules().confidence, Rules().mem_tolerance, Rules().acc_tolerance,
            Rules().bootstrap, Rules().seed, Rules().cross_machine) == (0.10, 0.95, 0.05, 0.5, 2000, 0, False)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"confidence": 0.0}, "confidence must be in (0, 1), got 0.0"),
        ({"confidence": 1.0}, "confidence must be in (0, 1), got 1.0"),
        ({"bootstrap": 0}, "bootstrap must be >= 1 resamples, got 0"),
        ({"latency_threshold": float("inf")}, "latency_threshold must be a finite number >= 0, got inf"),
        ({"mem_tolerance": -0.01}, "mem_tolerance must be a finite number >= 0, got -0.01"),
        ({"acc_tolerance": float("nan")}, "acc_tolerance must be a finite number >= 0, got nan"),
        # A bool is an int to Python, but True as a tolerance is a mistake; a string is not a number.
        ({"acc_tolerance": True}, "acc_tolerance must be a finite number >= 0, got True"),
        ({"latency_threshold": "0.1"}, "latency_threshold must be a finite number >= 0, got '0.1'"),
    ],
)
def test_bad_rules_are_refused_naming_the_field_and_what_is_valid(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(CompareError) as exc:
        Rules(**kwargs)
    assert str(exc.value) == message


@pytest.mark.parametrize(
    "kwargs",
    [{"latency_threshold": 0.0}, {"mem_tolerance": 0}, {"acc_tolerance": 0.0}, {"confidence": 0.001},
     {"confidence": 0.999}, {"bootstrap": 1}],
)
def test_rules_at_the_edge_of_their_range_are_accepted(kwargs: dict[str, Any]) -> None:
    rules = Rules(**kwargs)  # zero tolerance means "any change counts"; one resample is a (poor) bootstrap
    assert all(getattr(rules, k) == v for k, v in kwargs.items())


# A direction the table does not use today (a throughput decided on samples, a relative size where more is better,
# an error rate in points where less is better): the rules take the direction from the key, so check both.
FPS = keys.Key("fps", "img/s", "frames per second", "higher", "samples", samples="fps_samples", measured=True)
CAPACITY = keys.Key("capacity", "bytes", "free memory", "higher", "relative")
SIGNED = keys.Key("delta", "bytes", "a signed size", "lower", "relative")
ERROR_RATE = keys.Key("error_rate", "%", "top-1 error", "lower", "points")


def fps(value: float, raw: list[float] | None = None) -> dict[str, Any]:
    return {"values": {"fps": value, **({"fps_samples": raw} if raw is not None else {})}}


@pytest.mark.parametrize(
    ("new_raw", "verdict", "detail"),
    [
        # Throughput halved: ratio 0.5, interval [0.4, 0.6] by hand; oriented (1/0.6, 1/0.4) = [1.67, 2.5] > 1.1.
        ([4.0, 5.0, 6.0], "regression", "lower: x0.500, 95% CI [0.400, 0.600], threshold 10%"),
        # Doubled: oriented [1/2.1, 1/1.9] = [0.476, 0.526] < 0.9.
        ([19.0, 20.0, 21.0], "improvement", "higher: x2.000, 95% CI [1.900, 2.100], threshold 10%"),
        # [0.8, 1.2] oriented is [0.833, 1.25]: straddles both thresholds (its ends must swap when inverted).
        ([8.0, 10.0, 12.0], "noise", "within noise/threshold: x1.000, 95% CI [0.800, 1.200], threshold 10%"),
    ],
)
def test_a_higher_is_better_timed_value_is_oriented(new_raw: list[float], verdict: str, detail: str) -> None:
    finding = decide_samples("c", FPS, fps(10.0, FLAT_10), fps(new_raw[1], new_raw), Rules())
    assert (finding.key, finding.base, finding.new, finding.verdict, finding.detail) == (
        "fps", 10.0, new_raw[1], verdict, detail)


@pytest.mark.parametrize(
    ("new", "verdict", "ratio"),
    [(8.0, "regression", "x0.800"),  # 10 / 8 = 1.25 slower, past 1.2
     (8.5, "noise", "x0.850"),  # 10 / 8.5 = 1.18
     (12.0, "noise", "x1.200"),  # faster, but without samples never an improvement
     (0.0, "regression", "x0.000")],  # nothing left: infinitely worse
)
def test_a_higher_is_better_point_value_is_oriented(new: float, verdict: str, ratio: str) -> None:
    finding = decide_samples("c", FPS, fps(10.0), fps(new), Rules(latency_threshold=0.2))
    assert (finding.verdict, finding.detail) == (
        verdict, f"{ratio} (no usable raw samples: compared the point values against the threshold)")


@pytest.mark.parametrize(
    ("base_bytes", "new_bytes", "verdict", "detail"),
    [
        (100, 105, "noise", "+5.0% (tolerance 5%)"),  # at the tolerance: not past it
        (100, 106, "regression", "+6.0% (tolerance 5%)"),
        (100, 95, "noise", "-5.0% (tolerance 5%)"),
        (100, 94, "improvement", "-6.0% (tolerance 5%)"),
        (100, 100, "same", "+0.0% (tolerance 5%)"),
        (0, 0, "same", "base is 0: no relative change"),
        (0, 7, "noise", "base is 0: no relative change"),
    ],
)
def test_memory_at_its_tolerance_and_the_detail(base_bytes: int, new_bytes: int, verdict: str, detail: str) -> None:
    finding = one_finding(rec(metric="memory_inference", rss_peak_bytes=base_bytes),
                          rec(metric="memory_inference", rss_peak_bytes=new_bytes))
    assert (finding.base, finding.new, finding.verdict, finding.detail) == (base_bytes, new_bytes, verdict, detail)


def test_a_relative_change_takes_its_direction_and_the_size_of_the_base() -> None:
    rules = Rules()
    # More free capacity is better: -10 % is a regression, +10 % an improvement.
    assert _relative("c", CAPACITY, 100, 90, rules).verdict == "regression"
    assert _relative("c", CAPACITY, 100, 110, rules).verdict == "improvement"
    # A signed value: -100 -> -80 is +20 of a base of size 100, i.e. +20 % (worse where lower is better).
    finding = _relative("c", SIGNED, -100, -80, rules)
    assert (finding.verdict, finding.detail) == ("regression", "+20.0% (tolerance 5%)")
    assert _relative("c", SIGNED, -100, -120, rules).verdict == "improvement"


@pytest.mark.parametrize(
    ("new_top1", "verdict", "detail"),
    [
        (79.5, "noise", "-0.50 points (tolerance 0.5)"),  # exactly 0.5 points worse: at the tolerance
        (79.25, "regression", "-0.75 points (tolerance 0.5)"),
        (80.5, "noise", "+0.50 points (tolerance 0.5)"),
        (80.75, "improvement", "+0.75 points (tolerance 0.5)"),
        (80.0, "same", "+0.00 points (tolerance 0.5)"),
    ],
)
def test_accuracy_at_its_tolerance_and_the_detail(new_top1: float, verdict: str, detail: str) -> None:
    finding = one_finding(rec(metric="train_result", top1=80.0), rec(metric="train_result", top1=new_top1))
    assert (finding.base, finding.new, finding.verdict, finding.detail) == (80.0, new_top1, verdict, detail)


def test_points_where_lower_is_better() -> None:
    rules = Rules(acc_tolerance=1.5)
    assert _points("c", ERROR_RATE, 10.0, 12.0, rules).verdict == "regression"
    assert _points("c", ERROR_RATE, 10.0, 8.0, rules).verdict == "improvement"
    finding = _points("c", ERROR_RATE, 10.0, 11.5, rules)
    assert (finding.verdict, finding.detail) == ("noise", "+1.50 points (tolerance 1.5)")


def test_a_changed_count_says_so() -> None:
    finding = one_finding(rec(metric="flops", params=3), rec(metric="flops", params=4))
    assert (finding.key, finding.base, finding.new, finding.verdict, finding.detail) == (
        "params", 3, 4, "regression", "deterministic value changed (update the baseline if intended)")
    same = one_finding(rec(metric="flops", params=3), rec(metric="flops", params=3))
    assert (same.verdict, same.detail) == ("same", "")


@pytest.mark.parametrize(
    ("base_status", "new_status", "verdict", "detail"),
    [
        ("ok", "oom", "regression", "CUDA out of memory"),  # the detail is NEW's error
        ("oom", "ok", "improvement", ""),
        # A crash is never a result: a case that used to end in an out-of-memory (or a skip) and now raises has
        # broken; the other way round it works better than before without working yet.
        ("oom", "error", "regression", "CUDA out of memory"),
        ("skipped", "error", "regression", "CUDA out of memory"),
        ("error", "oom", "noise", "CUDA out of memory"),
        ("oom", "skipped", "noise", "CUDA out of memory"),
        ("error", "ok", "improvement", ""),
    ],
)
def test_a_status_change_and_its_detail(base_status: str, new_status: str, verdict: str, detail: str) -> None:
    finding = one_finding(rec(metric="flops", status=base_status, macs=1), rec(metric="flops", status=new_status,
                                                                               macs=2))
    assert (finding.key, finding.base, finding.new, finding.verdict, finding.detail) == (
        "status", base_status, new_status, verdict, detail)


def test_a_case_that_failed_does_not_stop_the_cases_after_it() -> None:
    base = [rec(case="a", metric="flops", macs=1), rec(case="b", metric="flops", status="oom", macs=1),
            rec(case="c", metric="flops", macs=1)]
    new = [rec(case="a", metric="flops", status="oom", macs=1), rec(case="b", metric="flops", status="oom", macs=1),
           rec(case="c", metric="flops", macs=2)]
    assert [(f.case_id, f.key, f.verdict) for f in compare_records(base, new).findings] == [
        ("flops[a]", "status", "regression"), ("flops[c]", "macs", "regression")]


def test_only_values_with_a_rule_on_both_sides_are_compared() -> None:
    # gmacs has no rule, "my_score" is in no table, contended is a flag, and a null value is no value: only macs
    # is compared.
    base = rec(metric="flops", macs=5, gmacs=1.0, my_score=1, contended=False, params=None)
    new = rec(metric="flops", macs=5, gmacs=2.0, my_score=2, contended=False, params=7)
    assert [(f.key, f.verdict) for f in compare_records([base], [new]).findings] == [("macs", "same")]
    # Both failed: nothing to compare, not even the status.
    assert compare_records([rec(status="oom", latency_ms_p50=1.0)], [rec(status="oom", latency_ms_p50=9.0)]
                           ).findings == []


@pytest.mark.parametrize(
    ("base_fp", "new_fp", "verdict", "detail"),
    [
        ("", None, "regression", None),  # an empty fingerprint is no fingerprint: both unknown, same machine
        (12345, None, "regression", None),  # not a string: unknown
        (None, "fedcba9876543210", "cross-machine",
         "measured on machine unknown vs fedcba9876543210 (pass --cross-machine to compare anyway)"),
        ("0123456789abcdef", "fedcba9876543210", "cross-machine",
         "measured on machine 0123456789abcdef vs fedcba9876543210 (pass --cross-machine to compare anyway)"),
    ],
)
def test_the_machine_of_a_record(base_fp: Any, new_fp: Any, verdict: str, detail: str | None) -> None:
    base, new = lat(10.0, FLAT_10), lat(20.0, [19.0, 20.0, 21.0])
    for r, fp in ((base, base_fp), (new, new_fp)):
        if fp is not None:
            r["fingerprint"] = fp
    finding = one_finding(base, new)
    assert finding.verdict == verdict
    if detail is not None:
        assert (finding.base, finding.new, finding.detail) == (10.0, 20.0, detail)


@pytest.mark.parametrize(
    ("base_busy", "new_busy", "detail"),
    [
        (True, True, "base and new measured on a busy machine (contended)"),
        (True, False, "base measured on a busy machine (contended)"),
        (False, True, "new measured on a busy machine (contended)"),
        (False, False, None),  # contended: false on both sides is a quiet machine
    ],
)
def test_a_contended_pair_names_the_busy_side(base_busy: bool, new_busy: bool, detail: str | None) -> None:
    base, new = lat(10.0, FLAT_10), lat(20.0, [19.0, 20.0, 21.0])
    base["values"]["contended"], new["values"]["contended"] = base_busy, new_busy
    finding = one_finding(base, new)
    if detail is None:
        assert finding.verdict == "regression"
    else:
        assert (finding.base, finding.new, finding.verdict, finding.detail) == (10.0, 20.0, "inconclusive", detail)


def test_the_metric_filter_skips_other_metrics_wherever_they_are() -> None:
    # The other metric first: the filter must skip it and go on to the records it wants.
    base = [rec(latency_ms_p50=1.0), rec(metric="flops", macs=10), rec(case="z", latency_ms_p50=1.0)]
    new = [rec(latency_ms_p50=5.0), rec(metric="flops", macs=11), rec(case="z", latency_ms_p50=1.0)]
    result = compare_records(base, new, metrics=["flops"])
    assert [(f.case_id, f.key, f.verdict) for f in result.findings] == [
        ("flops[vit-cpu-fp32-b1-224]", "macs", "regression")]
    both = compare_records(base, new, metrics=["flops", "latency"])
    assert [f.case_id for f in both.findings] == ["flops[vit-cpu-fp32-b1-224]", "latency[vit-cpu-fp32-b1-224]",
                                                  "latency[z]"]


def test_an_unknown_metric_names_each_unknown_one_and_what_exists() -> None:
    base, new = [rec(metric="flops", macs=1)], [rec(latency_ms_p50=1.0)]
    with pytest.raises(CompareError) as exc:
        compare_records(base, new, metrics=["zoo", "flops", "latancy"])
    assert str(exc.value) == "metric(s) 'latancy', 'zoo' are in neither run; the runs have: flops, latency"
    with pytest.raises(CompareError) as exc:
        compare_records([], [], metrics=["flops"])
    assert str(exc.value) == "metric(s) 'flops' are in neither run; the runs have: no records"


def test_counts_and_decided() -> None:
    base = [rec(case="a", metric="flops", macs=1, params=2), rec(case="b", metric="flops", macs=1),
            rec(case="c", metric="flops", macs=1)]
    new = [rec(case="a", metric="flops", macs=2, params=2), rec(case="d", metric="flops", macs=1),
           rec(case="c", metric="flops", macs=3)]
    result = compare_records(base, new)
    # a: macs regression, params same; b: missing; c: macs regression; d: added. Sorted by verdict.
    assert result.counts() == {"added": 1, "missing": 1, "regression": 2, "same": 1}
    assert list(result.counts()) == ["added", "missing", "regression", "same"]
    assert result.decided == 3  # the two regressions and the unchanged params; missing/added decide nothing
    assert len(result.regressions) == 2


# One finding of each kind. Columns: verdict, case, value, base, new, detail, two spaces apart, each as wide as its
# longest cell (the detail at most 60 characters, longer text cut); a regression in capitals; "same" rows only
# with show_all; floats in 6 significant digits; an absent side blank.
TABLE_BASE = [rec(case="a", metric="flops", macs=10), rec(case="a", latency_ms_p50=10.0), rec(case="gone"),
              rec(case="a", metric="memory_inference", rss_peak_bytes=100),
              rec(case="a", metric="train_result", top1=80.0, top5=95.0)]
TABLE_NEW = [rec(case="a", metric="flops", macs=11), rec(case="a", latency_ms_p50=10.5), rec(case="new"),
             rec(case="a", metric="memory_inference", rss_peak_bytes=112),
             rec(case="a", metric="train_result", top1=81.0, top5=95.0)]
TABLE_LINES = [
    "verdict      case                 value           base     new      detail" + " " * 54,
    "REGRESSION   flops[a]             macs            10       11       "
    "deterministic value changed (update the baseline if intended",
    "noise        latency[a]           latency_ms_p50  10       10.5     "
    "x1.050 (no usable raw samples: compared the point values aga",
    "missing      latency[gone]        (case)          present           not in NEW",
    "added        latency[new]         (case)                   present  only in NEW",
    "REGRESSION   memory_inference[a]  rss_peak_bytes  100      112      +12.0% (tolerance 5%)",
    "improvement  train_result[a]      top1            80       81       +1.00 points (tolerance 0.5)",
]


def test_the_table_a_user_reads() -> None:
    result = compare_records(TABLE_BASE, TABLE_NEW)
    assert result.table() == "\n".join(TABLE_LINES)
    same_row = "same         train_result[a]      top5            95       95       +0.00 points (tolerance 0.5)"
    assert result.table(show_all=True) == "\n".join([*TABLE_LINES, same_row])


def test_the_table_of_nothing_changed_and_of_odd_values() -> None:
    unchanged = compare_records([rec(metric="flops", macs=10)], [rec(metric="flops", macs=10)])
    assert unchanged.table() == "no differences"
    assert unchanged.table(show_all=True) == (
        "verdict  case                        value  base  new  detail\n"
        "same     flops[vit-cpu-fp32-b1-224]  macs   10    10")
    odd = Comparison([Finding("c", "k", 1234567.0, None, "noise"), Finding("c", "k", 0.000123456789, 17_563_828_224,
                                                                           "noise")])
    assert odd.table() == (
        "verdict  case  value  base         new          detail\n"
        "noise    c     k      1.23457e+06\n"
        "noise    c     k      0.000123457  17563828224")


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    out = capsys.readouterr()
    return code, out.out, out.err


def test_the_cli_output_of_a_pass_and_of_a_fail(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = _write(tmp_path, "b.json", [rec(metric="flops", macs=10, params=3), rec(case="gone", metric="flops", macs=1)])
    n = _write(tmp_path, "n.json", [rec(metric="flops", macs=10, params=3), rec(case="new", metric="flops", macs=1)])
    code, out, err = _cli(["compare", b, n, "--allow-missing"], capsys)
    assert (code, err) == (0, "")
    assert out == (
        # The header is padded to the widest detail, "only in NEW".
        "verdict  case         value   base     new      detail" + " " * 5 + "\n"
        "missing  flops[gone]  (case)  present           not in NEW\n"
        "added    flops[new]   (case)           present  only in NEW\n"
        "\n"
        "1 added, 1 missing, 2 same\n"
        f"OK: no regression of {n} against {b} (2 values decided)\n")
    n2 = _write(tmp_path, "n2.json", [rec(metric="flops", macs=11, params=4)])
    code, out, err = _cli(["compare", b, n2, "--all"], capsys)
    assert code == 1
    assert err == f"FAIL: 2 regression(s) of {n2} against {b}\n"
    assert out.endswith("\n\n1 missing, 2 regression\n")
    # --all lists the unchanged values too.
    n3 = _write(tmp_path, "n3.json", [rec(metric="flops", macs=10, params=4)])
    code, out, _ = _cli(["compare", b, n3], capsys)
    assert code == 1 and not [line for line in out.splitlines() if line.startswith("same")]
    code, out, _ = _cli(["compare", b, n3, "--all"], capsys)
    assert code == 1
    # Verdicts as wide as "REGRESSION", values as "params", bases as "present".
    assert "same        flops[vit-cpu-fp32-b1-224]  macs    10       10" in out.splitlines()


@pytest.mark.parametrize(
    ("base", "new", "counts"),
    [
        ([rec(case="a", metric="flops", macs=1)], [rec(case="b", metric="flops", macs=1)], "1 added, 1 missing"),
        ([rec(status="oom")], [rec(status="oom")], "no cases"),
    ],
)
def test_a_gate_that_decided_nothing_says_what_it_saw(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                      base: list[dict[str, Any]], new: list[dict[str, Any]],
                                                      counts: str) -> None:
    b, n = _write(tmp_path, "b.json", base), _write(tmp_path, "n.json", new)
    code, out, err = _cli(["compare", b, n], capsys)
    assert code == 2
    assert err == (f"lvm compare: error: nothing was compared between {b} and {n} ({counts}): the gate decided "
                   "nothing, so it cannot pass\n")
    assert out.endswith("\n\n" + (counts if counts != "no cases" else "no records") + "\n")


def test_the_cli_options_reach_the_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parser = build_parser(["compare"])
    args = parser.parse_args(["compare", "b.json", "n.json"])
    # The documented defaults (see --help).
    assert (args.base, args.new, args.metric, args.latency_threshold, args.mem_tolerance, args.acc_tolerance,
            args.cross_machine, args.all) == ("b.json", "n.json", None, 0.10, 0.05, 0.5, False, False)
    args = parser.parse_args(["compare", "b.json", "n.json", "--metric", "flops", "--metric", "latency",
                              "--latency-threshold", "0.25", "--mem-tolerance", "0", "--acc-tolerance", "2",
                              "--cross-machine", "--all"])
    assert (args.metric, args.latency_threshold, args.mem_tolerance, args.acc_tolerance, args.cross_machine,
            args.all) == (["flops", "latency"], 0.25, 0.0, 2.0, True, True)
    # Two metrics named on the command line both compare: a regression in the second one fails the gate.
    b = _write(tmp_path, "b.json", [rec(metric="flops", macs=10), lat(10.0, FLAT_10), rec(metric="x", macs=1)])
    n = _write(tmp_path, "n.json", [rec(metric="flops", macs=10), lat(20.0, [19.0, 20.0, 21.0]),
                                    rec(metric="x", macs=2)])
    code, out, _ = _cli(["compare", b, n, "--metric", "flops", "--metric", "latency"], capsys)
    assert code == 1 and "1 regression, 1 same" in out


@pytest.mark.parametrize("value", ["nan", "-1", "x"])
def test_a_bad_option_value_is_named_in_the_error(value: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["compare", "b.json", "n.json", "--mem-tolerance", value])
    assert f"argument --mem-tolerance: must be a finite number >= 0, got {value!r}" in capsys.readouterr().err


def test_the_help_explains_each_option(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")
    with pytest.raises(SystemExit):
        main(["compare", "--help"])
    # Whitespace normalized (argparse wraps), and each sentence a whole one: nothing glued before or after it.
    text = " " + " ".join(capsys.readouterr().out.split()) + " "
    for line in ("--metric METRIC only these metrics (repeatable), e.g. --metric flops",
                 "relative slowdown that counts, a fraction (default 0.10)",
                 "relative memory growth allowed, a fraction (default 0.05)",
                 "top-1/top-5 drop allowed, in points (default 0.5)",
                 "also decide latency/memory of records measured on different machines (fingerprints)",
                 "--all also list values that did not change"):
        assert f" {line} " in text, line


def test_the_baseline_is_the_counted_subset_sorted_by_case() -> None:
    prov = {"counter": "torch.utils.flop_counter", "host": "box", "git": "abc"}
    recs = [
        {**rec(case="b", metric="flops", macs=10, params=3, gmacs=1e-8, latency_ms_p50=2.0), "provenance": prov},
        rec(case="x", latency_ms_p50=1.0),  # timed: not in a baseline
        {**rec(case="c", metric="flops_scaling", scaling_macs=[1, 4], scaling_img_sizes=[8, 16],
               macs_exponent_vs_pixels=1.0), "provenance": {}},
        rec(case="a", metric="flops", status="error", macs=1),  # failed: nothing to hold anyone to
        {**rec(case="a", metric="flops", graph_modules=4, graph_structure_id=99), "provenance": prov},
    ]
    out = baseline_records(recs)
    assert [r["case_id"] for r in out] == ["flops[a]", "flops[b]", "flops_scaling[c]"]
    assert [r["values"] for r in out] == [{"graph_modules": 4, "graph_structure_id": 99}, {"macs": 10, "params": 3},
                                          {"scaling_macs": [1, 4], "scaling_img_sizes": [8, 16]}]
    assert [r["provenance"] for r in out] == [{"counter": "torch.utils.flop_counter"},
                                              {"counter": "torch.utils.flop_counter"}, {"counter": None}]
    assert {r["run_id"] for r in out} == {"baseline"}
    assert all("created_utc" not in r for r in out)
    # Everything else of the record is kept as it was.
    assert {k: v for k, v in out[1].items() if k not in ("values", "provenance", "run_id")} == {
        k: v for k, v in recs[0].items() if k not in ("values", "provenance", "run_id", "created_utc")}
    # Other metrics on request; the input is not modified.
    assert [r["case_id"] for r in baseline_records(recs, metrics=("latency",))] == ["latency[x]"]
    assert recs[0]["run_id"] == "r" and "created_utc" in recs[0] and recs[0]["values"]["gmacs"] == 1e-8


@pytest.mark.parametrize("zero_side", ["base", "new"])
def test_rounds_of_zero_ms_fall_back_to_the_point_values_instead_of_dividing_by_zero(zero_side: str) -> None:
    # A clock too coarse for the case reads 0 ms rounds; a ratio of medians of such rounds divides by zero (base) or
    # is 0 (new, which oriented for a higher-is-better key divides again). The point values decide instead:
    # base p50 0 -> an infinite ratio, a regression; new p50 0 -> x0.000, noise (never a claimed improvement).
    zeros, tens = [0.0, 0.0, 0.0], [10.0, 10.0, 10.0]
    base = lat(0.0, zeros) if zero_side == "base" else lat(10.0, tens)
    new = lat(10.0, tens) if zero_side == "base" else lat(0.0, zeros)
    finding = one_finding(base, new)
    expected = ("regression", "xinf") if zero_side == "base" else ("noise", "x0.000")
    assert (finding.verdict, finding.detail) == (
        expected[0], f"{expected[1]} (no usable raw samples: compared the point values against the threshold)")


def test_sub_millisecond_rounds_still_get_the_interval() -> None:
    # Rounds of 0.2 ms and 0.5 ms are positive, so the bootstrap decides: every resampled ratio is 0.5 / 0.2 = 2.5.
    finding = one_finding(lat(0.2, [0.2, 0.2, 0.2]), lat(0.5, [0.5, 0.5, 0.5]))
    assert (finding.verdict, finding.detail) == ("regression", "slower: x2.500, 95% CI [2.500, 2.500], threshold 10%")


def test_the_process_baseline_is_reported_not_gated() -> None:
    # rss_baseline_bytes is the interpreter and torch before any model; rss_peak_bytes already contains it. A new
    # torch that doubles it changes the environment, not the model: only the peak (+1%, within 5%) is judged.
    base = rec(metric="memory_inference", rss_baseline_bytes=100, rss_peak_bytes=1000)
    new = rec(metric="memory_inference", rss_baseline_bytes=200, rss_peak_bytes=1010)
    findings = compare_records([base], [new]).findings
    assert [(f.key, f.verdict) for f in findings] == [("rss_peak_bytes", "noise")]
