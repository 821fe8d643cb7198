"""``lvm latency MODEL``: forward latency and throughput of one model at one shape, optionally recorded."""

from __future__ import annotations

import argparse
import json
import sys

from lvmharness.core.argtypes import batch_size, img_size, output_folder, seconds
from lvmharness.core.vocab import DTYPE_NAMES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("--device", default="auto")
    p.add_argument("--dtype", default="fp32", choices=DTYPE_NAMES)
    p.add_argument("--channels-last", action="store_true")
    p.add_argument("--compile", action="store_true", help="torch.compile (compile time reported apart)")
    p.add_argument("--batch-size", type=batch_size, default=1)
    p.add_argument("--img-size", type=img_size, default=None, help="input side in px (default: the model's)")
    p.add_argument("--budget-s", type=seconds, default=2.0, help="seconds of measured rounds")
    p.add_argument("--out", type=output_folder, default=None, help="also append a record to a new run in this folder")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from lvmharness.core.oom import is_oom
    from lvmharness.measure.latency import ForwardCase, Timer, TimingConfig, forward_latency
    from lvmharness.models.build import create_model, resolve
    from lvmharness.runtime.devices import resolve_device
    from lvmharness.runtime.execution import ExecOptions, Prepared

    spec = resolve(args.model)
    device = resolve_device(args.device)
    size = args.img_size if args.img_size is not None else spec.default_img_size
    options = ExecOptions(args.dtype, channels_last=args.channels_last, compile=args.compile)
    model = create_model(spec, img_size=size, device=device).eval()
    prepared = Prepared(model, device, options)
    timer = Timer(device, TimingConfig(budget_s=args.budget_s))
    try:
        result = forward_latency(prepared, ForwardCase(args.batch_size, size), timer)
    except Exception as exc:
        if not is_oom(exc):
            raise
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ValueError(f"out of memory at --batch-size {args.batch_size}, {size}px on {device} ({first}); "
                         "try a smaller --batch-size or --img-size") from exc
    values, prov = result.values(), result.provenance()
    if args.out:
        from lvmharness.runtime import envinfo, machine
        from lvmharness.store.records import make_record, record_identity
        from lvmharness.store.run_folder import RunStore

        store = RunStore(args.out, fingerprint=machine.fingerprint)
        store.write_env(envinfo.collect([device]))
        ident = record_identity(
            metric="latency", model=spec.timm_name, alias=args.model, family=spec.family, device=str(device),
            dtype=args.dtype, batch_size=args.batch_size, img_size=size, options=options.id_options(),
        )
        store.add(make_record(run_id=store.run_id, values=values, provenance=prov, **ident))
        store.close()
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
