"""Model sources beside timm: ``torchvision:NAME`` and ``package.module:callable`` factories.

A factory is any callable returning a ``torch.nn.Module``; it is called with ``img_size=`` and ``num_classes=``
when its signature accepts them (transformers need the input size at build time, CNNs do not). The module is
imported from ``sys.path``, then from the current directory (as ``python -m`` would find it), so
``lvm flops mymodels:build`` works from the folder that holds ``mymodels.py``.

Every failure is a ``ModelSourceError`` of one line that names the part that failed: the module that does not
import (with its exception), the attribute that is missing (with close matches), the factory that raised or
returned something that is not a module.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from lvmharness.models.aliases import TORCHVISION_PREFIX, ModelError, factory_of

if TYPE_CHECKING:
    from torch import nn


class ModelSourceError(ModelError):
    """A ``module:callable`` or ``torchvision:NAME`` that cannot give a model; the message names the part."""


def _import(module: str, source: str) -> Any:
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as exc:
        top = module.split(".")[0]
        cwd = os.getcwd()
        if exc.name == top and cwd not in sys.path and "" not in sys.path:
            sys.path.append(cwd)  # appended: never shadows an installed module
            return _import(module, source)
        raise ModelSourceError(f"model source {source!r}: module {module!r} does not import "
                               f"({type(exc).__name__}: {exc})") from None
    except Exception as exc:  # the user's module raised while importing: report it, whatever it is
        raise ModelSourceError(f"model source {source!r}: module {module!r} does not import "
                               f"({type(exc).__name__}: {exc})") from None


def load_factory(source: str) -> Callable[..., Any]:
    """``package.module:callable`` (a dotted attribute path after the colon is allowed) -> the callable."""
    registered = factory_of(source)
    if registered is not None:
        return registered
    module_name, _, attr = source.partition(":")
    if not module_name or not attr:
        raise ModelSourceError(f"model source {source!r}: expected 'package.module:callable'")
    obj: Any = _import(module_name, source)
    path = module_name
    for part in attr.split("."):
        if not hasattr(obj, part):
            names = [n for n in dir(obj) if not n.startswith("_") and callable(getattr(obj, n, None))]
            close = difflib.get_close_matches(part, names, n=5, cutoff=0.5)
            hint = f"; close matches: {', '.join(close)}" if close else (
                f"; it defines: {', '.join(names[:10])}" if names else "")
            raise ModelSourceError(f"model source {source!r}: {path!r} has no attribute {part!r}{hint}")
        obj = getattr(obj, part)
        path = f"{path}.{part}"
    if not callable(obj):
        raise ModelSourceError(f"model source {source!r}: {path} is a {type(obj).__name__}, not a callable "
                               "returning an nn.Module")
    return obj


def accepts(fn: Callable[..., Any], name: str) -> bool:
    """Whether ``fn`` takes keyword ``name`` (directly or through ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def call_factory(source: str, kwargs: dict[str, Any]) -> nn.Module:
    """Call the factory of ``source`` with the keywords it accepts; the result must be an ``nn.Module``."""
    from torch import nn as torch_nn

    fn = load_factory(source)
    accepted = {k: v for k, v in kwargs.items() if v is not None and accepts(fn, k)}
    try:
        model = fn(**accepted)
    except Exception as exc:  # the user's code: report what it raised, in one line
        raise ModelSourceError(f"model source {source!r}: the factory raised {type(exc).__name__}: {exc}") from None
    if not isinstance(model, torch_nn.Module):
        raise ModelSourceError(f"model source {source!r}: the factory returned {type(model).__name__}, "
                               "not a torch.nn.Module")
    return model


def torchvision_names() -> list[str]:
    import torchvision.models

    return sorted(torchvision.models.list_models())


def check_torchvision(source: str) -> str:
    name = source[len(TORCHVISION_PREFIX):]
    names = torchvision_names()
    if name not in names:
        close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
        hint = f" Close matches: {', '.join(TORCHVISION_PREFIX + c for c in close)}." if close else ""
        raise ModelSourceError(f"unknown torchvision model {name!r} in {source!r}.{hint} "
                               "torchvision.models.list_models() lists them.")
    return name


def torchvision_takes_image_size(name: str) -> bool:
    """Whether torchvision's builder for ``name`` bakes the input side into the model (its ViTs: the position
    table has one entry per patch), i.e. forwards an ``image_size`` keyword to a class that takes one."""
    import torchvision.models

    builder = torchvision.models.get_model_builder(name)
    module = inspect.getmodule(builder)
    if module is None:
        return False
    classes = [obj for obj in vars(module).values() if inspect.isclass(obj) and obj.__module__ == module.__name__]
    return any("image_size" in inspect.signature(cls.__init__).parameters for cls in classes)


def build_torchvision(source: str, num_classes: int | None, img_size: int | None = None) -> nn.Module:
    import torchvision.models

    name = check_torchvision(source)
    kwargs: dict[str, Any] = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if img_size is not None and torchvision_takes_image_size(name):
        kwargs["image_size"] = img_size
    model: nn.Module = torchvision.models.get_model(name, **kwargs)
    return model
