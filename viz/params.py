"""What a request asks for (model, size, batch, dtype, memory mode, budget), validated: a 400 with the allowed
range for anything else. Numbers are ASCII digits only."""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any, NamedTuple

from flask import request

from lvmharness.core.vocab import STORAGE_DTYPE_NAMES
from lvmharness.models import aliases

from .errors import ApiError

# Bounds of what the page generates: sane for a browser tree and seconds of meta-device analysis.
IMG_SIZE_RANGE = (16, 1024)
BATCH_SIZE_RANGE = (1, 1024)
DTYPES = STORAGE_DTYPE_NAMES
MEMORY_MODES = ("train", "inference")
BUDGET_GIB_RANGE = (0.001, 4096.0)
_MODEL = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,149}")


class Requested(NamedTuple):
    model: str
    img_size: int
    batch: int
    dtype: str


def requested(served: Mapping[str, aliases.ModelSpec]) -> Requested:
    """(model, img_size, batch, dtype) from the query string or a JSON body, validated."""
    body = request.get_json(silent=True) if request.method == "POST" else None
    src: dict[str, Any] = body if isinstance(body, dict) else dict(request.args)
    model = str(src.get("model", ""))
    plain = _MODEL.fullmatch(model) or (
        model.startswith(aliases.TORCHVISION_PREFIX) and _MODEL.fullmatch(model[len(aliases.TORCHVISION_PREFIX):]))
    if model not in served and not plain:
        raise ApiError(400, "model must be an alias, a timm name or torchvision:NAME (letters, digits, '_', '-', "
                            "'.'); custom models (package.module:callable) are served only when named at server "
                            "start: model_viz.py --models mypkg.models:build", served=sorted(served))
    spec = served.get(model) or aliases.lookup(model)
    default_size = spec.default_img_size if spec else 224
    img_size = int_value("img_size", src.get("img_size"), default_size, IMG_SIZE_RANGE)
    batch = int_value("batch_size", src.get("batch_size"), 1, BATCH_SIZE_RANGE)
    dtype = str(src.get("dtype", "fp32"))
    if dtype not in DTYPES:
        raise ApiError(400, f"dtype must be one of {', '.join(DTYPES)}", allowed=list(DTYPES))
    return Requested(model, img_size, batch, dtype)


def memory_mode() -> str:
    mode = str(request.args.get("mode", "train"))
    if mode not in MEMORY_MODES:
        raise ApiError(400, f"mode must be one of {', '.join(MEMORY_MODES)}", allowed=list(MEMORY_MODES))
    return mode


def int_value(name: str, raw: Any, default: int, bounds: tuple[int, int]) -> int:
    if raw is None or raw == "":
        return default
    problem = ApiError(400, f"{name} must be an integer in {bounds[0]}..{bounds[1]}, got {str(raw)[:40]!r}",
                       allowed=list(bounds))
    if isinstance(raw, bool) or not isinstance(raw, int | str):
        raise problem
    if isinstance(raw, str) and not re.fullmatch(r"[0-9]{1,9}", raw):
        raise problem  # ASCII digits only: int() also reads '٥٦' (Arabic-Indic) and '1_000'
    value = int(raw)
    if not bounds[0] <= value <= bounds[1]:
        raise ApiError(400, f"{name} {value} is outside the allowed range {bounds[0]}..{bounds[1]}",
                       allowed=list(bounds))
    return value


def float_value(name: str, raw: Any, bounds: tuple[float, float]) -> float | None:
    if raw is None or raw == "":
        return None
    try:
        value = float(raw) if str(raw).isascii() else math.nan  # float() also reads '٥' (Arabic-Indic five)
    except ValueError:
        raise ApiError(400, f"{name} must be a number of GiB in {bounds[0]}..{bounds[1]}, got {str(raw)[:40]!r}",
                       allowed=list(bounds)) from None
    if not bounds[0] <= value <= bounds[1]:
        raise ApiError(400, f"{name} {value} is outside the allowed range {bounds[0]}..{bounds[1]}",
                       allowed=list(bounds))
    return value
