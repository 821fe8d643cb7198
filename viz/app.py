"""The architecture page: a Flask app over saved graph JSON files (``lvm graph`` writes them).

Reading a saved graph imports no torch: only ``lvmharness.formats.graph_format`` (validation) and
``lvmharness.models.aliases`` (the alias table). A graph that is not saved yet is generated on request on the meta
device through ``lvmharness.measure.graph`` (``viz/work.py``: the one place this app calls the library's torch side).

API (JSON unless noted), routes in ``graph_routes.py``, ``run_routes.py`` and ``site_routes.py``:
  GET /api/models                       aliases (original four first) and the saved graphs with their totals
  GET /api/graph/<name>                 a saved graph; ?download=1 sends it as an attachment
  GET /api/graph/<name>/csv             the graph's node table as CSV
  GET /api/graph?model=M&img_size=N&batch_size=B&dtype=D
                                        the graph of a model at a size: served if saved, else generated and saved
  GET /api/status                       generations and measurements running now (the page says so)
  POST /api/measure  {model, img_size, batch_size, dtype}
                                        measure time per layer on this machine's CPU (only with allow_measure)
  GET /api/memory?model=M&img_size=N&batch_size=B&dtype=D&mode=train|inference&budget_gib=G
                                        the step's peak memory predicted on fake tensors (nothing allocated),
                                        its breakdown, bytes kept for backward per layer, largest batch for G GiB
A graph answer carries ``layer_times``: every measurement of that graph in ``<graphs>/layers/`` (``lvm layers
-o <graphs>`` writes them), so the page shows measured time beside MACs.
Errors: 400 bad input (with the allowed range or valid sizes), 404 unknown model (with close matches) or
graph, 422 malformed or wrong-version graph file (with the reason). Never a 500 for bad input. A bad file in the
folder only ever affects itself (``folder.py``).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from flask import Flask

from lvmharness.models.aliases import ModelSpec

from .blueprint import page
from .state import EXTENSION, PageState


def create_app(graphs_dir: Path | str, *, generate: bool = True, allow_measure: bool = False,
               served_models: Mapping[str, ModelSpec] | None = None) -> Flask:
    """``generate=False`` serves saved graphs only (no torch at all). ``allow_measure`` lets the page's "measure"
    button time a model per layer on this machine's CPU (seconds to a minute of full CPU use per click).

    ``served_models``: custom models (``package.module:callable``) named by whoever started the server, already
    resolved. A module path that arrives in a request is never imported: besides these, a request may name only an
    alias, a registered or published model, a timm name or ``torchvision:NAME``."""
    root = Path(graphs_dir).resolve()
    if generate:  # serving saved graphs only creates nothing
        root.mkdir(parents=True, exist_ok=True)
    app = Flask(__name__, static_folder=None)
    app.config["GRAPHS_DIR"] = root
    app.extensions[EXTENSION] = PageState(root, generate, allow_measure, dict(served_models or {}))
    app.register_blueprint(page)
    return app
