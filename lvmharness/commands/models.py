"""``lvm models``: the registered aliases, families and default input sizes (or timm names matching a glob)."""

from __future__ import annotations

import argparse
import fnmatch
import json

from lvmharness.core.errors import BadValueError
from lvmharness.models import aliases


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--timm", metavar="PATTERN", help="list timm model names matching a glob instead")
    p.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:

    if args.timm is not None:
        if not args.timm.strip():
            raise BadValueError("--timm '' is an empty pattern; give a glob such as 'convnext*' (or '*' for all)")
        import timm

        names = [n for n in timm.list_models() if fnmatch.fnmatchcase(n, args.timm)]
        print("\n".join(names) if names else f"no timm model matches {args.timm!r}")
        return 0 if names else 1
    rows = [(s.family, s.alias, s.timm_name, str(s.default_img_size), s.note) for s in aliases.registered()]
    rows.sort(key=lambda r: (aliases.FAMILIES.index(r[0]) if r[0] in aliases.FAMILIES else 99, r[1]))
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
