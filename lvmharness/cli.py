"""``lvm`` — the command line (also ``python -m lvmharness``). Subcommands parse arguments and call the library."""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

from lvmharness import __version__
from lvmharness.results import DTYPE_NAMES, STORAGE_DTYPE_NAMES


def _cmd_models(args: argparse.Namespace) -> int:
    from lvmharness import models

    if args.timm:
        import timm

        names = [n for n in timm.list_models() if fnmatch.fnmatchcase(n, args.timm)]
        print("\n".join(names) if names else f"no timm model matches {args.timm!r}")
        return 0 if names else 1
    rows = [(s.family, s.alias, s.timm_name, str(s.default_img_size), s.note) for s in models.registered()]
    rows.sort(key=lambda r: (models.FAMILIES.index(r[0]) if r[0] in models.FAMILIES else 99, r[1]))
    if args.json:
        print(json.dumps([dict(zip(("family", "alias", "timm_name", "img_size", "note"), r, strict=True))
                          for r in rows], indent=1))
        return 0
    header = ("family", "alias", "timm name", "img", "note")
    widths = [max(len(r[i]) for r in [*rows, header]) for i in range(5)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    print("\nAny other timm model name works too (`lvm models --timm 'convnext*'`).")
    return 0


def _cmd_latency(args: argparse.Namespace) -> int:
    from lvmharness.devices import resolve_device
    from lvmharness.execution import ExecOptions, Prepared
    from lvmharness.measure.latency import ForwardCase, Timer, TimingConfig, forward_latency
    from lvmharness.models import create_model, resolve

    spec = resolve(args.model)
    device = resolve_device(args.device)
    size = args.img_size or spec.default_img_size
    options = ExecOptions(args.dtype, channels_last=args.channels_last, compile=args.compile)
    model = create_model(spec, img_size=size, device=device).eval()
    prepared = Prepared(model, device, options)
    timer = Timer(device, TimingConfig(budget_s=args.budget_s))
    values, prov = forward_latency(prepared, ForwardCase(args.batch_size, size), timer)
    if args.out:
        from lvmharness import envinfo
        from lvmharness.results import RunStore, make_record

        store = RunStore(Path(args.out))
        store.write_env(envinfo.collect([device]))
        store.add(make_record(
            run_id=store.run_id, metric="latency", model=spec.timm_name, alias=args.model, family=spec.family,
            device=str(device), dtype=args.dtype, batch_size=args.batch_size, img_size=size, values=values,
            provenance=prov, options=options.id_options(),
        ))
        print(f"record written to {store.results_path}", file=sys.stderr)
    if args.json:
        print(json.dumps({"model": spec.timm_name, "device": str(device), "dtype": args.dtype,
                          "batch_size": args.batch_size, "img_size": size,
                          **{k: v for k, v in values.items() if "samples" not in k},
                          "rounds": prov["rounds"], "high_variance": prov["high_variance"]}, indent=1))
    else:
        flag = "  (noisy: IQR/median > 10%)" if prov["high_variance"] else ""
        print(f"{spec.timm_name} on {device} {args.dtype}, batch {args.batch_size}, {size}px: "
              f"p50 {values['latency_ms_p50']:.3f} ms, p90 {values['latency_ms_p90']:.3f} ms, "
              f"IQR {values['latency_ms_iqr']:.3f} ms over {prov['rounds']} rounds; "
              f"throughput {values['throughput_img_s']:.1f} img/s{flag}")
    return 0


def _cmd_flops(args: argparse.Namespace) -> int:
    from lvmharness.measure.flops import analyze, module_table, scaling_exponent

    sizes = [int(v) for v in args.scaling.split(",")] if args.scaling else []
    report = analyze(args.model, img_size=args.img_size, batch_size=args.batch_size, verify=args.verify)
    scaling: dict[str, object] | None = None
    if sizes:
        per_size = [analyze(args.model, img_size=s, batch_size=1, backward=False).macs for s in sizes]
        scaling = {"img_sizes": sizes, "macs": per_size, "exponent_vs_pixels": scaling_exponent(sizes, per_size)}
    if args.json:
        out = report.summary()
        out["macs_by_module"] = {p: sum(ops.values()) for p, ops in report.by_module.items() if p}
        if scaling:
            out["scaling"] = scaling
        print(json.dumps(out, indent=1))
        return 0
    b = report.batch_size
    print(f"{report.model} at {report.img_size}px, batch {b}  (counted on {report.device}; MACs = multiply-accumulates,"
          f" FLOPs = 2 x MACs)")
    print(f"  params              {report.params:>16,}  ({report.params / 1e6:.3f} M)")
    print(f"  forward MACs        {report.macs:>16,}  ({report.macs / b / 1e9:.3f} GMACs per image)")
    print(f"  forward FLOPs       {report.flops:>16,}  ({report.flops / b / 1e9:.3f} GFLOPs per image)")
    if report.macs_fwd_bwd is not None:
        print(f"  fwd+bwd MACs        {report.macs_fwd_bwd:>16,}  ({report.macs_fwd_bwd / report.macs:.2f} x forward)")
    if report.verified_by:
        print(f"  second counter      {report.verified_by['macs']:>16,}  ({report.verified_by['counter']}, "
              f"{report.verified_by['rel_diff']:.4%} apart)")
    print("  by op:   " + ", ".join(f"{op} {v / 1e9:.3f} G" for op, v in report.by_op.items()))
    print(f"\n  {'module (depth <= ' + str(args.depth) + ')':<40} {'GMACs':>10} {'share':>7}")
    for path, module_macs, share in module_table(report, depth=args.depth, top=args.top):
        print(f"  {path:<40} {module_macs / 1e9:>10.4f} {share:>7.1%}")
    if scaling:
        print(f"\n  scaling over {sizes}: MACs ~ pixels^{scaling['exponent_vs_pixels']:.3f}")
    return 0


def _cmd_graph(args: argparse.Namespace) -> int:
    from lvmharness.graph import build_graph
    from lvmharness.results import atomic_write_json

    doc = build_graph(args.model, img_size=args.img_size, batch_size=args.batch_size, dtype=args.dtype)
    atomic_write_json(Path(args.output), doc)
    t = doc["totals"]
    print(f"wrote {args.output}: {doc['model']} at {doc['img_size']}px, {t['modules']} modules, "
          f"{t['params'] / 1e6:.3f} M params, {t['macs'] / 1e9:.3f} GMACs")
    return 0


def _cmd_viz(args: argparse.Namespace) -> int:
    """The page lives in the top-level ``viz`` package (flask); the library never imports it, so this runs it."""
    import importlib.util
    import runpy

    if importlib.util.find_spec("viz") is None:
        raise ValueError("the viz package is not importable: run `lvm viz` from the repository root or install it")
    rest = args.viz_args[1:] if args.viz_args[:1] == ["--"] else args.viz_args
    sys.argv = ["lvm viz", *rest]
    runpy.run_module("viz", run_name="__main__")
    return 0


def _cmd_report(args: argparse.Namespace) -> int:
    from lvmharness.report import build_report

    runs = [Path(r) for r in args.runs]
    out = Path(args.output) if args.output else (runs[0] if runs[0].is_dir() else runs[0].parent) / "report"
    files = build_report(runs, out)
    print(f"report: {files['html']}\ncsv:    {files['csv']}")
    for name, path in files.items():
        if name not in ("html", "csv"):
            print(f"plot:   {path}")
    return 0


def _cmd_compare(args: argparse.Namespace) -> int:
    from lvmharness.compare import Rules, compare_paths

    rules = Rules(latency_threshold=args.latency_threshold, mem_tolerance=args.mem_tolerance,
                  acc_tolerance=args.acc_tolerance)
    metrics = args.metric or None
    result = compare_paths(args.base, args.new, rules, metrics)
    print(result.table(show_all=args.all))
    n = len(result.regressions)
    counts: dict[str, int] = {}
    for f in result.findings:
        counts[f.verdict] = counts.get(f.verdict, 0) + 1
    print("\n" + ", ".join(f"{v} {k}" for k, v in sorted(counts.items())))
    if n:
        print(f"FAIL: {n} regression(s) of {args.new} against {args.base}", file=sys.stderr)
        return 1
    print(f"OK: no regression of {args.new} against {args.base}")
    return 0


def _cmd_baseline(args: argparse.Namespace) -> int:
    from lvmharness.compare import DETERMINISTIC_METRICS, baseline_records
    from lvmharness.results import atomic_write_json, load_records

    recs = baseline_records(load_records(args.run), args.metric or DETERMINISTIC_METRICS)
    if not recs:
        raise ValueError(f"{args.run} has no ok records of {args.metric or DETERMINISTIC_METRICS}")
    atomic_write_json(Path(args.output), recs)
    print(f"wrote {len(recs)} baseline records to {args.output}")
    return 0


def _cmd_env(args: argparse.Namespace) -> int:
    from lvmharness import envinfo

    print(json.dumps(envinfo.collect(), indent=1))
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lvm", description="Measure what vision models cost.")
    p.add_argument("--version", action="version", version=f"lvmharness {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    m = sub.add_parser("models", help="list model aliases, families and default input sizes")
    m.add_argument("--timm", metavar="PATTERN", help="list timm model names matching a glob instead")
    m.add_argument("--json", action="store_true")
    m.set_defaults(func=_cmd_models)

    lat = sub.add_parser("latency", help="forward latency and throughput of one model at one shape")
    lat.add_argument("model")
    lat.add_argument("--device", default="auto")
    lat.add_argument("--dtype", default="fp32", choices=DTYPE_NAMES)
    lat.add_argument("--channels-last", action="store_true")
    lat.add_argument("--compile", action="store_true", help="torch.compile (compile time reported apart)")
    lat.add_argument("--batch-size", type=int, default=1)
    lat.add_argument("--img-size", type=int, default=None)
    lat.add_argument("--budget-s", type=float, default=2.0)
    lat.add_argument("--out", default=None, help="also append a record to a new run in this folder")
    lat.add_argument("--json", action="store_true")
    lat.set_defaults(func=_cmd_latency)

    f = sub.add_parser("flops", help="params, MACs and FLOPs (forward and forward+backward), per module")
    f.add_argument("model")
    f.add_argument("--img-size", type=int, default=None)
    f.add_argument("--batch-size", type=int, default=1)
    f.add_argument("--depth", type=int, default=2, help="module depth of the table")
    f.add_argument("--top", type=int, default=15, help="rows of the table")
    f.add_argument("--verify", action="store_true",
                   help="count again with fvcore on CPU (real weights) and fail on > 0.1%% disagreement")
    f.add_argument("--scaling", metavar="SIZES", help="comma list of sizes: fit MACs ~ pixels^k")
    f.add_argument("--json", action="store_true")
    f.set_defaults(func=_cmd_flops)

    g = sub.add_parser("graph", help="export the module tree with shapes, params, MACs, memory (graph JSON)")
    g.add_argument("model")
    g.add_argument("--img-size", type=int, default=None)
    g.add_argument("--batch-size", type=int, default=1)
    g.add_argument("--dtype", default="fp32", choices=STORAGE_DTYPE_NAMES)
    g.add_argument("-o", "--output", required=True, help="graph JSON file to write")
    g.set_defaults(func=_cmd_graph)

    sub.add_parser("train", help="train / fine-tune a model (same flags as train.py; lvm train --help)",
                   add_help=False)
    v = sub.add_parser("viz", help="serve the architecture page (same as python model_viz.py)", add_help=False)
    v.add_argument("viz_args", nargs=argparse.REMAINDER, help="--host, --port, --graphs, --no-generate")
    v.set_defaults(func=_cmd_viz)

    r = sub.add_parser("report", help="HTML page, PNG plots and CSV from run folders or results files")
    r.add_argument("runs", nargs="+", help="run folders (results/<run-id>) or results.json files")
    r.add_argument("-o", "--output", default=None, help="folder to write (default: <first run>/report)")
    r.set_defaults(func=_cmd_report)

    c = sub.add_parser("compare", help="compare two runs; exit 1 on a regression")
    c.add_argument("base")
    c.add_argument("new")
    c.add_argument("--metric", action="append", help="only these metrics (repeatable), e.g. --metric flops")
    c.add_argument("--latency-threshold", type=float, default=0.10, help="relative slowdown that counts (0.10)")
    c.add_argument("--mem-tolerance", type=float, default=0.05, help="relative memory growth allowed (0.05)")
    c.add_argument("--acc-tolerance", type=float, default=0.5, help="top-1/top-5 drop allowed, in points (0.5)")
    c.add_argument("--all", action="store_true", help="also list values that did not change")
    c.set_defaults(func=_cmd_compare)

    bl = sub.add_parser("baseline", help="write the deterministic records of a run (params, MACs, graph) as a baseline")
    bl.add_argument("run")
    bl.add_argument("-o", "--output", required=True)
    bl.add_argument("--metric", action="append", help="metrics to keep (default: flops, flops_scaling)")
    bl.set_defaults(func=_cmd_baseline)

    e = sub.add_parser("env", help="print what env.json records about this machine")
    e.set_defaults(func=_cmd_env)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    from lvmharness.devices import DeviceUnavailableError
    from lvmharness.measure.flops import FlopCountError
    from lvmharness.models import ModelError
    from lvmharness.results import ResultsFileError

    raw = list(sys.argv[1:] if argv is None else argv)
    if raw[:1] == ["train"]:  # train.py's own parser, flags and all
        from lvmharness.train import main as train_main

        return train_main(raw[1:], prog="lvm train")
    if raw[:1] == ["viz"]:  # everything after `viz` belongs to the page's own parser
        raw = ["viz", "--", *raw[1:]]
    args = build_parser().parse_args(raw)
    func: Callable[[argparse.Namespace], int] = args.func
    try:
        return func(args)
    except (ModelError, DeviceUnavailableError, ResultsFileError, FlopCountError, ValueError) as exc:
        print(f"lvm {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
