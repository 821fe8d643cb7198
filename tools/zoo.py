"""The zoo run: count FLOPs and predict memory for every torchvision classification model and one model of every
timm module that defines models, against the numbers those projects publish (not part of CI: it is slow).

    python tools/zoo.py --out zoo-run                               # everything
    python tools/zoo.py --out zoo-run --only torchvision            # the 80 torchvision models
    python tools/zoo.py --out zoo-run --timm-table PATH.csv         # with timm's published benchmark table
    python tools/zoo.py --out zoo-run --table-only                  # rebuild the tables from zoo-run/rows.jsonl

Each model: its forward multiply-adds and params counted on the meta device (``lvmharness.measure.flops``), and
the peak of one train step at batch 1 predicted on fake tensors (``lvmharness.measure.prediction``).

* torchvision: at the resolution of its DEFAULT weights (their transforms' crop size), checked against the weights'
  meta: ``num_params`` exactly (with the ``eval_params`` convention where the model builds modules that do not run
  in eval: googlenet's and inception_v3's auxiliary classifiers) and ``_ops`` -- named "GFLOPS" in torchvision's
  documentation but multiply-adds -- within its 3-decimal rounding (|GMACs - _ops| <= 0.0005).
* timm: per module, the first model (alphabetically) listed in the published table when one is given, else the
  first model, at its pretrained config's input size; the table's ``param_count`` (millions, 2 decimals) and
  ``infer_gmacs`` are shown beside the count. That table counts with fvcore's default handles on the
  re-parameterised form (the ``fvcore,deploy`` convention of ``lvm flops``), so its GMACs are an upper reference
  for the multiply-adds, not an equality.

Rows go to ``OUT/rows.jsonl`` as they are made (a rerun skips models already there); ``OUT/zoo.md`` is the table.
A model that cannot be counted is listed with one line naming the reason, never dropped.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import io
import json
import sys
import time
import warnings
from pathlib import Path
from typing import Any

GMACS_ROUNDING = 0.0005  # torchvision's _ops has 3 decimals


def _reason(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return f"{type(exc).__name__}: {text[:300]}"


def torchvision_cases() -> list[dict[str, Any]]:
    import torchvision.models as tvm

    cases = []
    for name in sorted(tvm.list_models(module=tvm)):
        weights = tvm.get_model_weights(name).DEFAULT
        crop = weights.transforms().crop_size
        size = int(crop[0] if isinstance(crop, list | tuple) else crop)
        cases.append({"zoo": "torchvision", "model": f"torchvision:{name}", "module": "torchvision",
                      "img_size": size, "weights": str(weights),
                      "published_params": int(weights.meta["num_params"]),
                      "published_gmacs": float(weights.meta["_ops"])})
    return cases


def read_timm_table(path: Path | None) -> dict[str, dict[str, float]]:
    """model -> {img_size, gmacs, params_m} from one of timm's results/benchmark-infer-*.csv (first row wins)."""
    if path is None:
        return {}
    out: dict[str, dict[str, float]] = {}
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            name = row["model"]
            if name not in out:
                out[name] = {"img_size": float(row["infer_img_size"]), "gmacs": float(row["infer_gmacs"]),
                             "params_m": float(row["param_count"])}
    return out


def timm_cases(table: dict[str, dict[str, float]]) -> list[dict[str, Any]]:
    import timm

    from lvmharness.models.build import resolve

    cases = []
    for module in sorted(timm.list_modules()):
        names = sorted(timm.list_models(module=module))
        if not names:
            continue
        in_table = [n for n in names if n in table]
        name = in_table[0] if in_table else names[0]
        size = resolve(name).default_img_size
        case: dict[str, Any] = {"zoo": "timm", "model": name, "module": module, "img_size": size,
                                "models_in_module": len(names)}
        pub = table.get(name)
        if pub is not None and int(pub["img_size"]) == size:
            case["published_params_m"] = pub["params_m"]
            case["published_gmacs"] = pub["gmacs"]
        cases.append(case)
    return cases


def run_case(case: dict[str, Any], memory: bool) -> dict[str, Any]:
    from lvmharness.measure.flops import analyze
    from lvmharness.measure.prediction import predict_step
    from lvmharness.measure.step import StepConfig

    row = dict(case)
    started = time.perf_counter()
    try:
        rep = analyze(case["model"], img_size=case["img_size"], backward=False)
        row.update(status="counted", params=rep.params, macs=rep.macs)
        if "published_params" in case and rep.params != case["published_params"]:
            ev = analyze(case["model"], img_size=case["img_size"], backward=False, convention="eval_params")
            row["params_eval"] = ev.params
        if case["zoo"] == "torchvision":
            row["params_ok"] = case["published_params"] in (rep.params, row.get("params_eval"))
            row["gmacs_ok"] = abs(rep.macs / 1e9 - case["published_gmacs"]) <= GMACS_ROUNDING + 1e-12
    except Exception as exc:  # every failure is a row with its reason: the run covers the whole zoo
        row.update(status="refused", reason=_reason(exc))
    row["flops_s"] = round(time.perf_counter() - started, 2)
    if memory and row["status"] == "counted":
        started = time.perf_counter()
        for batch in (1, 2):
            # A train step at batch 1 cannot run where a BatchNorm meets a 1x1 map or a flat vector (inception_v3's
            # auxiliary head, EfficientViT-M's): torch refuses one value per channel. Those get batch 2.
            try:
                pred = predict_step(StepConfig(case["model"], batch_size=batch, img_size=case["img_size"],
                                               mode="train"))
                row["train_peak_bytes"], row["train_batch"] = pred.peak_bytes, batch
                row.pop("memory_reason", None)
                break
            except Exception as exc:
                row["memory_reason"] = _reason(exc)
                if "more than 1 value per channel" not in str(exc):
                    break
        row["memory_s"] = round(time.perf_counter() - started, 2)
    return row


def fvcore_check(row: dict[str, Any]) -> dict[str, Any]:
    """The published table's own convention for a timm row: fvcore's default count, on the deploy form where
    timm has one (CPU, real weights: seconds per model)."""
    from lvmharness.measure.flops import NoDeployFormError, analyze

    row = dict(row)
    started = time.perf_counter()
    try:
        try:
            rep = analyze(row["model"], img_size=row["img_size"], backward=False, convention="fvcore,deploy")
        except NoDeployFormError:
            rep = analyze(row["model"], img_size=row["img_size"], backward=False, convention="fvcore")
        row.update(fvcore_convention=rep.convention, fvcore_macs=rep.macs, fvcore_params=rep.params,
                   fvcore_difference_by_op=rep.convention_detail.get("difference_by_op", {}))
    except Exception as exc:
        row["fvcore_reason"] = _reason(exc)
    row["fvcore_s"] = round(time.perf_counter() - started, 2)
    return row


def _table_match(r: dict[str, Any]) -> bool:
    """The fvcore-convention count rounds to the table's params (M, 2 decimals) and GMACs (2 decimals)."""
    return (round(r["fvcore_macs"] / 1e9, 2) == round(r["published_gmacs"], 2)
            and round(r["fvcore_params"] / 1e6, 2) == round(r["published_params_m"], 2))


def _fmt_row(r: dict[str, Any]) -> str:
    name = r["model"] if r["zoo"] == "torchvision" else f"{r['model']} ({r['module']})"
    if r["status"] != "counted":
        return f"| {name} | {r['img_size']} | refused | {r['reason']} | | | {r['flops_s']} |"
    g = r["macs"] / 1e9
    if r["zoo"] == "torchvision":
        ev = f" (eval: {r['params_eval']:,})" if "params_eval" in r else ""
        pub = (f"params {r['published_params']:,} {'=' if r['params_ok'] else '≠'}{ev}; "
               f"_ops {r['published_gmacs']:.3f} {'=' if r['gmacs_ok'] else '≠'}")
    elif "published_gmacs" in r:
        pub = (f"table {r['published_params_m']:.2f} M, {r['published_gmacs']:.2f} G "
               f"({(g - r['published_gmacs']) / r['published_gmacs']:+.1%})")
        if "fvcore_macs" in r:
            same = _table_match(r)
            pub += (f"; {r['fvcore_convention']}: {r['fvcore_params'] / 1e6:.2f} M, {r['fvcore_macs'] / 1e9:.2f} G "
                    f"{'=' if same else '≠'}")
        elif "fvcore_reason" in r:
            pub += f"; fvcore: {r['fvcore_reason']}"
    else:
        pub = "not in the table"
    if "train_peak_bytes" in r:
        mem = f"{r['train_peak_bytes'] / 2**20:.1f} MiB" + (" (batch 2)" if r.get("train_batch") == 2 else "")
    else:
        mem = f"refused: {r.get('memory_reason', 'not run')}"
    secs = r["flops_s"] + r.get("memory_s", 0.0)
    return f"| {name} | {r['img_size']} | {r['params']:,} | {g:.3f} | {pub} | {mem} | {secs:.1f} |"


def table(rows: list[dict[str, Any]], wall_s: float | None) -> str:
    out = io.StringIO()
    for zoo in ("torchvision", "timm"):
        part = [r for r in rows if r["zoo"] == zoo]
        if not part:
            continue
        counted = [r for r in part if r["status"] == "counted"]
        mem = [r for r in counted if "train_peak_bytes" in r]
        out.write(f"\n### {zoo}: {len(counted)} of {len(part)} counted, {len(mem)} memory predictions\n\n")
        if zoo == "torchvision":
            ok_p = sum(bool(r.get("params_ok")) for r in counted)
            ok_g = sum(bool(r.get("gmacs_ok")) for r in counted)
            out.write(f"params = num_params: {ok_p} of {len(part)}; GMACs = _ops within 0.0005: {ok_g} of "
                      f"{len(part)}\n\n")
        else:
            checked = [r for r in counted if "fvcore_macs" in r]
            in_table = [r for r in counted if "published_gmacs" in r]
            out.write(f"modules: {len(part)}; refused: {len(part) - len(counted)}; in the published table: "
                      f"{len(in_table)}; counted in the table's convention: {len(checked)}, equal to the table "
                      f"after its rounding: {sum(_table_match(r) for r in checked)}\n\n")
        out.write("| model | px | params | GMACs | published | train peak, batch 1 | s |\n")
        out.write("|---|---|---|---|---|---|---|\n")
        for r in part:
            out.write(_fmt_row(r) + "\n")
    if wall_s is not None:
        out.write(f"\nwall time of this run: {wall_s / 60:.1f} min\n")
    return out.getvalue()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    ap.add_argument("--out", type=Path, required=True, help="folder for rows.jsonl and zoo.md")
    ap.add_argument("--only", choices=("torchvision", "timm"), default=None)
    ap.add_argument("--timm-table", type=Path, default=None,
                    help="one of timm's results/benchmark-infer-*.csv (published params and GMACs)")
    ap.add_argument("--no-memory", action="store_true", help="count FLOPs only")
    ap.add_argument("--table-only", action="store_true", help="rebuild zoo.md from rows.jsonl")
    ap.add_argument("--fvcore", action="store_true",
                    help="also count timm rows found in the table with the table's convention (fvcore[,deploy])")
    ap.add_argument("--fvcore-only", action="store_true", help="with --fvcore: only the fvcore pass over done rows")
    ap.add_argument("--redo", default="", metavar="NAMES", help="comma list of models to run again (new rows win)")
    args = ap.parse_args(argv)
    if args.timm_table is not None and not args.timm_table.is_file():
        print(f"zoo: --timm-table {args.timm_table}: no such file", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True, exist_ok=True)
    rows_path = args.out / "rows.jsonl"
    done: dict[str, dict[str, Any]] = {}
    if rows_path.exists():
        for line in rows_path.read_text().splitlines():
            if line.strip():
                r = json.loads(line)
                done[r["model"]] = r  # a later row of a model (--redo) replaces the earlier one
    for name in filter(None, args.redo.split(",")):
        done.pop(name.strip(), None)
    wall: float | None = None
    if not args.table_only:
        warnings.filterwarnings("ignore")
        started = time.perf_counter()
        cases: list[dict[str, Any]] = []
        if args.only in (None, "torchvision"):
            cases += torchvision_cases()
        if args.only in (None, "timm"):
            cases += timm_cases(read_timm_table(args.timm_table))
        with rows_path.open("a") as f:
            for i, case in enumerate(cases):
                if case["model"] in done or args.fvcore_only:
                    continue
                with contextlib.redirect_stdout(io.StringIO()):
                    row = run_case(case, memory=not args.no_memory)
                done[case["model"]] = row
                f.write(json.dumps(row) + "\n")
                f.flush()
                print(f"[{i + 1}/{len(cases)}] {case['model']}: {row['status']} "
                      f"{row.get('reason', '')} ({row['flops_s'] + row.get('memory_s', 0):.1f} s)", flush=True)
            if args.fvcore:
                for r in list(done.values()):
                    if r["zoo"] == "timm" and r["status"] == "counted" and "published_gmacs" in r and not (
                            "fvcore_macs" in r or "fvcore_reason" in r):
                        with contextlib.redirect_stdout(io.StringIO()):
                            r2 = fvcore_check(r)
                        done[r["model"]] = r2
                        f.write(json.dumps(r2) + "\n")
                        f.flush()
                        print(f"fvcore {r['model']}: {r2.get('fvcore_macs', r2.get('fvcore_reason'))} "
                              f"({r2['fvcore_s']} s)", flush=True)
        wall = time.perf_counter() - started
    text = table(list(done.values()), wall)
    (args.out / "zoo.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
