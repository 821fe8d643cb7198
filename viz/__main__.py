"""``python -m viz`` (and ``python model_viz.py``, ``lvm viz``): serve the architecture page."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from lvmharness.core.argtypes import int_at_least
from lvmharness.core.outputs import OutputPathError, check_output_folder
from lvmharness.models.aliases import ModelSpec

from .app import create_app  # relative: this package is `viz` in the repository, `lvmharness.viz` installed

DEFAULT_GRAPHS = Path("results") / "graphs"


def parser() -> argparse.ArgumentParser:
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
    return p


def graphs_folder(graphs: str, *, generate: bool) -> Path:
    """The graphs folder, checked before serving; OutputPathError says what is wrong with it."""
    if generate:  # the page saves the graphs it generates there
        return check_output_folder(graphs, what="graphs folder")
    if not graphs.strip():  # Path('') would silently mean the current folder
        raise OutputPathError("the graphs folder is an empty path; name it, e.g. results/graphs")
    if Path(graphs).exists() and not Path(graphs).is_dir():
        raise OutputPathError(f"{graphs} is a file; give the folder of graph JSON files")
    return Path(graphs)


def served_models(names: list[str], p: argparse.ArgumentParser) -> dict[str, ModelSpec]:
    """The custom models named at start, resolved (imported) now; a bad one is a usage error."""
    # Lazy: models.build imports torch, and a page started without --models (e.g. --no-generate) never needs it.
    from lvmharness.models.aliases import ModelError
    from lvmharness.models.build import resolve

    served = {}
    for name in names:
        try:
            served[name] = resolve(name)
        except ModelError as exc:
            p.error(f"--models: {exc}")
    return served


def main(argv: Sequence[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    try:
        graphs = graphs_folder(args.graphs, generate=not args.no_generate)
    except OutputPathError as exc:
        p.error(f"--graphs: {exc}")
    if args.allow_measure and args.no_generate:
        p.error("--allow-measure needs generation (it builds and runs the model): drop --no-generate")
    names = [m.strip() for m in args.models.split(",") if m.strip()]
    if names and args.no_generate:
        p.error("--models needs generation (the page builds their graphs): drop --no-generate")
    served = served_models(names, p) if names else {}
    app = create_app(graphs, generate=not args.no_generate, allow_measure=args.allow_measure, served_models=served)
    print(f"lvmharness architecture page: http://{args.host}:{args.port}/  (graphs in {graphs.resolve()})",
          flush=True)
    app.run(host=args.host, port=args.port, debug=False, threaded=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
