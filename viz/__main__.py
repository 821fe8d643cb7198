"""``python -m viz`` (and ``python model_viz.py``, ``lvm viz``): serve the architecture page."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lvmharness.core.argtypes import int_at_least

DEFAULT_GRAPHS = Path("results") / "graphs"


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="model_viz.py", description="Serve the lvmharness architecture page.")
    p.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int_at_least(1, 65535), default=5000)
    p.add_argument("--graphs", default=str(DEFAULT_GRAPHS), help="folder of graph JSON files (lvm graph)")
    p.add_argument("--no-generate", action="store_true",
                   help="serve saved graphs only; never build one (no torch import at all)")
    p.add_argument("--allow-measure", action="store_true",
                   help="show a 'measure' button that times the shown model per layer on this machine's CPU")
    p.add_argument("--models", default="", metavar="SOURCES",
                   help="comma list of custom models to serve, e.g. mypkg.models:build (imported now; the page "
                        "never imports a module named in a request)")
    args = p.parse_args(argv)
    from lvmharness.core.outputs import OutputPathError, check_output_folder

    try:
        if not args.no_generate:  # the page saves the graphs it generates there
            args.graphs = check_output_folder(args.graphs, what="graphs folder")
        elif not args.graphs.strip():  # Path('') would silently mean the current folder
            raise OutputPathError("the graphs folder is an empty path; name it, e.g. results/graphs")
        elif Path(args.graphs).exists() and not Path(args.graphs).is_dir():
            raise OutputPathError(f"{args.graphs} is a file; give the folder of graph JSON files")
    except OutputPathError as exc:
        p.error(f"--graphs: {exc}")
    args.graphs = Path(args.graphs)
    from .app import create_app  # relative: this package is `viz` in the repository, `lvmharness.viz` installed

    if args.allow_measure and args.no_generate:
        p.error("--allow-measure needs generation (it builds and runs the model): drop --no-generate")
    served = {}
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if names and args.no_generate:
        p.error("--models needs generation (the page builds their graphs): drop --no-generate")
    if names:
        from lvmharness.models.build import ModelError, resolve

        for name in names:
            try:
                served[name] = resolve(name)
            except ModelError as exc:
                p.error(f"--models: {exc}")
    app = create_app(args.graphs, generate=not args.no_generate, allow_measure=args.allow_measure,
                     served_models=served)
    print(f"lvmharness architecture page: http://{args.host}:{args.port}/  (graphs in {args.graphs.resolve()})",
          flush=True)
    app.run(host=args.host, port=args.port, debug=False, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
