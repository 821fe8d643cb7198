"""``lvm latency MODEL``: forward latency and throughput of one model at one shape, optionally recorded."""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING, Any

from lvmharness.core.argtypes import batch_size, img_size, output_folder, seconds
from lvmharness.core.vocab import DTYPE_NAMES
from lvmharness.store.records import make_record, record_identity
from lvmharness.store.run_folder import RunStore

if TYPE_CHECKING:
    from lvmharness.measure.latency import SpecLatency


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
    # Imported here, not at the top: it imports torch and timm, which the parser of the lvm command line never needs.
    from lvmharness.measure.latency import latency_from_spec
    from lvmharness.runtime.execution import ExecOptions

    options = ExecOptions(args.dtype, channels_last=args.channels_last, compile=args.compile)
    got = latency_from_spec(args.model, device=args.device, options=options, batch_size=args.batch_size,
                            img_size=args.img_size, budget_s=args.budget_s)
    values, prov = got.result.values(), got.result.provenance()
    if args.out:
        _record(args, got, values, prov)
    spec, device, size = got.spec, got.device, got.img_size
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


def _record(args: argparse.Namespace, got: SpecLatency, values: dict[str, Any], prov: dict[str, Any]) -> None:
    """Append the result as a ``latency`` record to a new run in ``--out``, with this machine's env.json."""
    from lvmharness.runtime import envinfo, machine  # import torch, like the measurement itself

    store = RunStore(args.out, fingerprint=machine.fingerprint)
    store.write_env(envinfo.collect([got.device]))
    ident = record_identity(
        metric="latency", model=got.spec.timm_name, alias=args.model, family=got.spec.family, device=str(got.device),
        dtype=args.dtype, batch_size=args.batch_size, img_size=got.img_size, options=got.options.id_options(),
    )
    store.add(make_record(run_id=store.run_id, values=values, provenance=prov, **ident))
    store.close()
    print(f"record written to {store.results_path}", file=sys.stderr)
