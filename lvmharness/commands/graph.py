"""``lvm graph MODEL -o FILE``: the module tree with shapes, params, MACs and memory, as a graph JSON file."""

from __future__ import annotations

import argparse

from lvmharness.core.argtypes import batch_size, img_size, output_file
from lvmharness.core.fileio import atomic_write_json
from lvmharness.core.vocab import STORAGE_DTYPE_NAMES


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model")
    p.add_argument("--img-size", type=img_size, default=None, help="input side in px (default: the model's)")
    p.add_argument("--batch-size", type=batch_size, default=1)
    p.add_argument("--dtype", default="fp32", choices=STORAGE_DTYPE_NAMES)
    p.add_argument("-o", "--output", type=output_file, required=True, help="graph JSON file to write")


def run(args: argparse.Namespace) -> int:
    from lvmharness.measure.graph import build_graph  # imports torch: only when the command runs, not its parser

    doc = build_graph(args.model, img_size=args.img_size, batch_size=args.batch_size, dtype=args.dtype)
    atomic_write_json(args.output, doc)
    t = doc["totals"]
    print(f"wrote {args.output}: {doc['model']} at {doc['img_size']}px, {t['modules']} modules, "
          f"{t['params'] / 1e6:.3f} M params, {t['macs'] / 1e9:.3f} GMACs")
    return 0
