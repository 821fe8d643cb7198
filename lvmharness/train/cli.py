"""``train.py`` and ``lvm train``: parse, run, and turn every user mistake into one clear line and exit code 2
(3 when training itself stopped, e.g. on a non-finite loss). Options are spelled ``--field`` after TrainConfig."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lvmharness.errors import UserError
from lvmharness.train.config import build_parser, config_from_args


def main(argv: Sequence[str] | None = None, prog: str = "train.py") -> int:
    args = build_parser(prog).parse_args(argv)
    from lvmharness.devices import DeviceUnavailableError
    from lvmharness.models import ModelError
    from lvmharness.train.fit import train
    from lvmharness.train.loop import NonFiniteLossError

    try:
        summary = train(config_from_args(args))
    except NonFiniteLossError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 3
    except (UserError, DeviceUnavailableError, ModelError) as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        return 2
    if summary.get("top1") is not None and "run_dir" in summary:
        print(f"done: top-1 {summary['top1']:.2f}% after {summary['epochs']} epoch(s); "
              f"records in {summary['run_dir']}; checkpoint {summary['checkpoint']}")
    return 0


