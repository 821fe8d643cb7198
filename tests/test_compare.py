"""lvm compare on constructed records: each rule, its direction, and the exit code."""

from __future__ import annotations

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


def test_plus_30_percent_with_very_noisy_samples_is_not_proven() -> None:
    base = [rec(latency_ms_p50=10.0, samples=samples(10.0, 0.9, n=8, seed=3))]
    new = [rec(latency_ms_p50=13.0, samples=samples(13.0, 0.9, n=8, seed=4))]
    assert not compare_records(base, new).regressions


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
