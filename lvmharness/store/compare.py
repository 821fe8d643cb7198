"""Comparing two runs: every declared value key by its rule (``store.rules``), and a verdict per value.

The rule, the direction and whether a value is measured on the machine come from ``lvmharness.store.keys`` (one
table); how each rule decides, and against which tolerance, from ``lvmharness.store.rules`` (one table). Beyond the
values, a status change decides too: ok -> oom/error/skipped is a regression, and so is anything -> error
(oom/error -> ok an improvement). A measured value (timed or memory) decides nothing when the pair cannot show a
change of the code: either record was taken on a busy machine (a ``flag`` key such as ``values["contended"]``:
"inconclusive") or the two come from different machines (top-level ``fingerprint``: "cross-machine", unless
``cross_machine``). Counted values compare everywhere.

The gate cannot pass by mistake: a metric asked for that neither side has is an error, not "OK"; the front end
(``lvm compare``, ``lvmharness.commands.compare``) also refuses a comparison that decided nothing. A case present on
one side only is reported, never a crash; of duplicate case ids the last record wins (a re-run).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lvmharness.store import keys
from lvmharness.store.loading import load_records
from lvmharness.store.records import is_contended, record_fingerprint
from lvmharness.store.rules import RULES, CompareError, Finding, Rules

# Verdicts that decide something; the others (missing, added, inconclusive, cross-machine) decide nothing.
DECIDED = ("regression", "improvement", "same", "noise")


@dataclass
class Comparison:
    findings: list[Finding] = field(default_factory=list)

    @property
    def regressions(self) -> list[Finding]:
        return [f for f in self.findings if f.verdict == "regression"]

    @property
    def decided(self) -> int:
        """Values (and statuses) that the rules actually decided."""
        return sum(f.verdict in DECIDED for f in self.findings)

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.findings:
            out[f.verdict] = out.get(f.verdict, 0) + 1
        return dict(sorted(out.items()))

    def table(self, *, show_all: bool = False) -> str:
        rows = [f for f in self.findings if show_all or f.verdict not in ("same",)]
        if not rows:
            return "no differences"
        head = ("verdict", "case", "value", "base", "new", "detail")
        cells = [(f.verdict.upper() if f.verdict == "regression" else f.verdict, f.case_id, f.key, _fmt(f.base),
                  _fmt(f.new), f.detail) for f in rows]
        widths = [min(60, max(len(str(r[i])) for r in [head, *cells])) for i in range(len(head))]
        lines = ["  ".join(str(c)[:60].ljust(w) for c, w in zip(head, widths, strict=True))]
        lines += ["  ".join(str(c)[:60].ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in cells]
        return "\n".join(lines)


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.6g}"
    return "" if v is None else str(v)


def _why_undecidable(b: dict[str, Any], n: dict[str, Any], rules: Rules) -> tuple[str, str] | None:
    """(verdict, detail) when a pair's measured values cannot show a change of the code; None when they can."""
    fb, fn = record_fingerprint(b), record_fingerprint(n)
    if fb != fn and not rules.cross_machine:
        return "cross-machine", f"measured on machine {fb} vs {fn} (pass --cross-machine to compare anyway)"
    busy = [side for side, r in (("base", b), ("new", n)) if is_contended(r)]
    if busy:
        return "inconclusive", f"{' and '.join(busy)} measured on a busy machine (contended)"
    return None


def _index(records: Iterable[dict[str, Any]], metrics: Sequence[str] | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    for r in records:
        if metrics and r["metric"] not in metrics:
            continue
        out[r["case_id"]] = r  # a re-run case: the last record wins
    return out


def _value_findings(case: str, b: dict[str, Any], n: dict[str, Any], rules: Rules) -> list[Finding]:
    """Each value both ok records hold, decided by its key's rule (``store.rules.RULES``); a measured value of a
    pair that cannot show a change of the code gets the reason instead."""
    undecidable = _why_undecidable(b, n, rules)
    out = []
    for name in sorted(b["values"].keys() & n["values"].keys()):
        key = keys.get(name)
        decide = RULES[key.rule].decide if key is not None else None
        bv, nv = b["values"][name], n["values"][name]
        if key is None or decide is None or bv is None or nv is None:
            continue
        if key.measured and undecidable is not None:
            out.append(Finding(case, name, bv, nv, *undecidable))
        else:
            out.append(decide(case, key, b, n, rules))
    return out


def compare_records(base: list[dict[str, Any]], new: list[dict[str, Any]], rules: Rules | None = None,
                    metrics: Sequence[str] | None = None) -> Comparison:
    rules = rules or Rules()
    if metrics:
        present = {r["metric"] for r in [*base, *new]}
        unknown = sorted(set(metrics) - present)
        if unknown:
            raise CompareError(f"metric(s) {', '.join(map(repr, unknown))} are in neither run; the runs have: "
                               f"{', '.join(sorted(present)) or 'no records'}")
    b_idx, n_idx = _index(base, metrics), _index(new, metrics)
    result = Comparison()
    for case in sorted(b_idx.keys() | n_idx.keys()):
        b, n = b_idx.get(case), n_idx.get(case)
        if n is None:
            result.findings.append(Finding(case, "(case)", "present", None, "missing", "not in NEW"))
            continue
        if b is None:
            result.findings.append(Finding(case, "(case)", None, "present", "added", "only in NEW"))
            continue
        bs, ns = b["status"], n["status"]
        if bs != ns:
            # A case that stopped working is a regression, and so is one that now crashes where it used to end in
            # an out-of-memory or a skip: an error is never a result. Back to ok is an improvement.
            verdict = "regression" if bs == "ok" or ns == "error" else ("improvement" if ns == "ok" else "noise")
            result.findings.append(Finding(case, "status", bs, ns, verdict, n.get("error") or ""))
            continue
        if bs != "ok":
            continue
        result.findings += _value_findings(case, b, n, rules)
    return result


def compare_paths(base: Path | str, new: Path | str, rules: Rules | None = None,
                  metrics: Sequence[str] | None = None) -> Comparison:
    return compare_records(load_records(base), load_records(new), rules, metrics)


DETERMINISTIC_METRICS = ("flops", "flops_scaling")


def baseline_records(
    records: list[dict[str, Any]], metrics: Sequence[str] = DETERMINISTIC_METRICS
) -> list[dict[str, Any]]:
    """The deterministic subset of a run, for committing as a CI baseline: values counted, not timed."""
    out = []
    for r in records:
        if r["metric"] not in metrics or r["status"] != "ok":
            continue
        keep = {k: v for k, v in r["values"].items() if k in keys.EXACT_KEYS}
        rec = {k: v for k, v in r.items() if k != "created_utc"}
        out.append({**rec, "values": keep, "provenance": {"counter": r["provenance"].get("counter")},
                    "run_id": "baseline"})
    out.sort(key=lambda r: r["case_id"])
    return out


