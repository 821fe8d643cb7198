"""lvm compare on constructed records: each rule, its direction, and the exit code."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest

from lvmharness.cli import main
from lvmharness.compare import Rules, baseline_records, compare_records, median_ratio_ci
from lvmharness.results import atomic_write_json, make_record


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
    from lvmharness.results import load_records

    path = Path(__file__).resolve().parents[1] / "benches" / "baseline" / "smoke.json"
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
    assert "no raw samples" in two[0].detail  # two rounds are too few for a bootstrap: the point ratio decides


def test_an_improvement_says_faster_and_carries_the_values() -> None:
    base = [rec(latency_ms_p50=10.0, samples=TIGHT_10)]
    new = [rec(latency_ms_p50=7.0, samples=[t * 0.7 for t in TIGHT_10])]
    (finding,) = compare_records(base, new).findings
    assert finding.verdict == "improvement" and finding.detail.startswith("faster")
    assert (finding.base, finding.new) == (10.0, 7.0)
