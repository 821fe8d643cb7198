"""``lvm compare NEW --baseline history:BRANCH[~N]``: a PR gate against the pooled history of a branch.

One earlier run is a noisy baseline (one unlucky run fails or passes a PR by chance; github-action-benchmark#267).
The baseline here pools, per case, the last ``N`` (default 5) uncontended ok runs of the branch measured on the
same machine (fingerprint) as the new record: raw samples concatenated (the bootstrap interval of ``lvm compare``
then sees N runs' spread), other measured values their median, counted values the latest. The comparison itself
is ``lvm compare``'s (the same rules and thresholds).

Exit codes, so CI can tell them apart: 0 no regression, 1 a regression, 2 bad input, 3 no baseline (no history
folder yet, or the branch has no uncontended run of any of these cases on this machine), 4 inconclusive (baselines
exist but nothing measured could be decided: the new run was measured on a busy machine).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from lvmharness.core.stats import median
from lvmharness.history.store import History, HistoryError
from lvmharness.store import keys
from lvmharness.store.records import is_contended, record_fingerprint
from lvmharness.store.rules import RULES

PREFIX = "history:"
DEFAULT_POOL = 5
EXIT_NO_BASELINE = 3
EXIT_INCONCLUSIVE = 4
_SPEC = re.compile(r"history:([^~]+)(?:~(\d+))?")


def is_spec(text: str | None) -> bool:
    return bool(text) and str(text).startswith(PREFIX)


def parse_spec(spec: str) -> tuple[str, int]:
    m = _SPEC.fullmatch(spec)
    if not m or (m.group(2) is not None and int(m.group(2)) < 1):
        raise HistoryError(f"baseline {spec!r} is not valid: use history:BRANCH or history:BRANCH~N with N >= 1 "
                           "runs to pool, e.g. history:main~5")
    return m.group(1), int(m.group(2) or DEFAULT_POOL)


def pooled_baseline(history: History, branch: str, n: int, new: Sequence[dict[str, Any]]
                    ) -> tuple[list[dict[str, Any]], list[str]]:
    """(one pooled baseline record per case of ``new`` that has history, case ids without a baseline)."""
    entries = list(reversed(history.entries_of(branch)))  # newest first
    wanted = {(r["case_id"], record_fingerprint(r)) for r in new if r.get("status") == "ok"}
    pools: dict[tuple[str, str], list[dict[str, Any]]] = {w: [] for w in wanted}
    for e in entries:
        if all(len(p) >= n for p in pools.values()):
            break
        for rec in history.records(e):
            w = (rec.get("case_id"), record_fingerprint(rec))
            if w in pools and len(pools[w]) < n and rec.get("status") == "ok" and not is_contended(rec):
                pools[w].append(rec)
    base, missing = [], []
    for (case, _fp), recs in sorted(pools.items()):
        if not recs:
            missing.append(case)
            continue
        base.append(_pool(recs, branch, n))
    return base, missing


def absent_cases(history: History, branch: str, new: list[dict[str, Any]], metrics: list[str] | None
                 ) -> list[str]:
    """Cases of the branch's newest run on NEW's machines that NEW lacks: a killed or partial run."""
    machines = {record_fingerprint(r) for r in new}
    have = {r.get("case_id") for r in new}
    for e in reversed(history.entries_of(branch)):
        recs = [r for r in history.records(e)
                if record_fingerprint(r) in machines and (not metrics or r.get("metric") in metrics)]
        if recs:
            return sorted({str(r.get("case_id")) for r in recs} - have)
    return []


def _pool(recs: list[dict[str, Any]], branch: str, n: int) -> dict[str, Any]:
    latest = recs[0]
    values: dict[str, Any] = dict(latest["values"])
    for name in latest["values"]:
        key = keys.get(name)
        got = [r["values"].get(name) for r in recs]
        if key is None or RULES[key.rule].pooled == "latest" or key.kind in ("bool", "list"):
            continue
        nums = [v for v in got if isinstance(v, int | float) and not isinstance(v, bool)]
        if nums:
            values[name] = median(nums)
        if key.samples:
            pooled = [s for r in recs for s in (r["values"].get(key.samples) or [])]
            if pooled:
                values[key.samples] = pooled
    values["contended"] = False
    return {**latest, "values": values, "run_id": f"{PREFIX}{branch}~{n}",
            "provenance": {**latest.get("provenance", {}), "pooled_runs": [r["run_id"] for r in recs]}}
