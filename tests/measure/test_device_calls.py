"""Every CUDA call that would act on the *current* device names the case's device instead.

``torch.cuda`` functions whose device argument defaults to ``None`` act on the current device, which is ``cuda:0``
unless something set it: for a case on ``cuda:1`` a bare ``torch.cuda.synchronize()`` waits for the wrong GPU, an
``Event.record()`` without a stream brackets an idle stream of another GPU, ``max_memory_allocated()`` reads another
GPU's peak, ``is_bf16_supported()`` (it takes no device) describes another GPU. This machine has no GPU to show the
wrong numbers, so the rule is checked where it can be on any machine: in the source. Each such call must either
name a device (or a stream) or sit lexically inside ``with on_device(...)`` / ``with torch.cuda.device(...)``.
A reference to such a function that is not a call (``sync = torch.cuda.synchronize``, called later with no
argument) is the same mistake and is flagged too.

The list of functions and their device parameters follows ``torch/cuda/__init__.py`` and ``torch/cuda/memory.py``
of PyTorch 2.14 (``device: Optional[_device_t] = None``). Not listed: ``empty_cache`` (it empties every device's
cache) and ``current_device`` (the way to *name* the current device when the user asked for plain ``cuda``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# torch.cuda function -> how many positional arguments come before ``device`` (0: device is the first).
DEVICE_DEFAULTING = {
    "synchronize": 0,
    "current_stream": 0,
    "default_stream": 0,
    "memory_allocated": 0,
    "max_memory_allocated": 0,
    "memory_reserved": 0,
    "max_memory_reserved": 0,
    "reset_peak_memory_stats": 0,
    "reset_max_memory_allocated": 0,
    "memory_stats": 0,
    "mem_get_info": 0,
    "get_device_properties": 0,
    "get_device_name": 0,
    "get_device_capability": 0,
    "get_rng_state": 0,
    "set_rng_state": 1,  # (new_state, device="cuda")
    "set_per_process_memory_fraction": 1,  # (fraction, device=None)
    "is_bf16_supported": -1,  # takes no device at all: only a device scope makes it ask the right GPU
}
ACCELERATOR_DEFAULTING = {"synchronize": 0, "current_stream": 0}
SCOPES = ("on_device", "devices.on_device", "torch.cuda.device")  # with on_device(d): …


def _dotted(node: ast.AST) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.append(node.id)
    return ".".join(reversed(parts))


def _defaulting(name: str) -> int | None:
    """Position of the device argument when ``name`` is a current-device-defaulting torch function, else None."""
    for prefix, table in (("torch.cuda.", DEVICE_DEFAULTING), ("torch.accelerator.", ACCELERATOR_DEFAULTING)):
        if name.startswith(prefix) and name[len(prefix):] in table:
            return table[name[len(prefix):]]
    return None


def _names_device(call: ast.Call, position: int) -> bool:
    if position < 0:
        return False
    return len(call.args) > position or any(k.arg in ("device", "stream") or k.arg is None for k in call.keywords)


class _Checker(ast.NodeVisitor):
    def __init__(self, path: str) -> None:
        self.path = path
        self.scope = 0  # depth of enclosing device scopes
        self.events: set[str] = set()  # names assigned a torch.cuda.Event(...)
        self.found: list[str] = []
        self.checked: list[str] = []  # every call the rule looked at, flagged or not

    def _flag(self, node: ast.AST, what: str) -> None:
        self.found.append(f"{self.path}:{getattr(node, 'lineno', '?')}: {what}")

    def visit_With(self, node: ast.With) -> None:
        scoped = any(isinstance(i.context_expr, ast.Call) and _dotted(i.context_expr.func) in SCOPES
                     for i in node.items)
        for item in node.items:
            self.visit(item)
        self.scope += scoped
        for stmt in node.body:
            self.visit(stmt)
        self.scope -= scoped

    def visit_Assign(self, node: ast.Assign) -> None:
        if isinstance(node.value, ast.Call) and _dotted(node.value.func).endswith("cuda.Event"):
            for target in node.targets:
                self.events.add(_dotted(target))
        self.generic_visit(node)

    def visit_Call(self, node: ast.Call) -> None:
        func = node.func
        name = _dotted(func)
        position = _defaulting(name)
        if position is not None:
            self.checked.append(name)
            if not self.scope and not _names_device(node, position):
                self._flag(node, f"{name}() acts on the current device: name the device or use on_device()")
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                self.visit(arg)
            return  # the function reference itself is fine: it is being called
        if isinstance(func, ast.Attribute) and func.attr == "record":
            receiver = func.value
            is_event = (isinstance(receiver, ast.Call) and _dotted(receiver.func).endswith("cuda.Event")) or (
                _dotted(receiver) in self.events)
            if is_event:
                self.checked.append("Event.record")
            if is_event and not self.scope and not node.args and not node.keywords:
                self._flag(node, "Event.record() without a stream records on the current device's stream")
        self.generic_visit(node)

    def visit_Attribute(self, node: ast.Attribute) -> None:
        if isinstance(node.ctx, ast.Load) and _defaulting(_dotted(node)) is not None:
            # Reached only for references that are not the callee of a call (visit_Call handles those).
            self._flag(node, f"{_dotted(node)} passed around uncalled: it will be called without a device")
        self.generic_visit(node)


def check_source(source: str, path: str = "<source>") -> list[str]:
    checker = _Checker(path)
    checker.visit(ast.parse(source))
    return checker.found


def _files() -> list[Path]:
    files = sorted((ROOT / "lvmharness").rglob("*.py")) + sorted((ROOT / "benches").glob("*.py"))
    return [*files, ROOT / "train.py", ROOT / "model_viz.py"]


def test_no_cuda_call_of_the_harness_acts_on_whatever_device_is_current() -> None:
    found = [f for path in _files() if path.exists()
             for f in check_source(path.read_text(encoding="utf-8"), str(path.relative_to(ROOT)))]
    assert found == []


def test_the_harness_really_makes_device_calls_the_check_looks_at() -> None:
    # Guard against a check that passes because it looks at nothing: walking the sources, it meets these calls.
    checked: set[str] = set()
    for path in _files():
        if path.exists():
            checker = _Checker(str(path))
            checker.visit(ast.parse(path.read_text(encoding="utf-8")))
            checked.update(checker.checked)
    assert {"torch.cuda.max_memory_allocated", "torch.cuda.current_stream", "torch.cuda.is_bf16_supported",
            "torch.cuda.reset_peak_memory_stats", "torch.cuda.mem_get_info", "Event.record"} <= checked


@pytest.mark.parametrize("source", [
    # events recorded without a stream: on the current device's stream
    "import torch\ndef f():\n    start = torch.cuda.Event(enable_timing=True)\n    start.record()\n",
    "import torch\ndef f(self):\n    self.open = torch.cuda.Event(enable_timing=True)\n    self.open.record()\n",
    "import torch\ntorch.cuda.Event(enable_timing=True).record()\n",
    # a bare synchronize, called or passed on to be called later
    "import torch\ntorch.cuda.synchronize()\n",
    "import torch\ndef f(cuda):\n    sync = torch.cuda.synchronize if cuda else (lambda: None)\n    sync()\n",
    "import torch\ntorch.accelerator.synchronize()\n",
    # peaks and capabilities of another GPU
    "import torch\nx = torch.cuda.max_memory_allocated()\n",
    "import torch\ntorch.cuda.reset_peak_memory_stats()\n",
    "import torch\nok = torch.cuda.is_bf16_supported(including_emulation=False)\n",
    "import torch\ntorch.cuda.set_per_process_memory_fraction(0.5)\n",
    "import torch\ntorch.cuda.set_rng_state(state)\n",
    # a scope that ended before the call
    "import torch\nwith torch.cuda.device(d):\n    pass\nx = torch.cuda.memory_reserved()\n",
])
def test_the_check_flags_calls_on_the_current_device(source: str) -> None:
    assert len(check_source(source)) == 1


@pytest.mark.parametrize("source", [
    "import torch\ntorch.cuda.synchronize(device)\n",
    "import torch\ntorch.cuda.synchronize(device=d)\n",
    "import torch\ns = torch.cuda.current_stream(device)\ne = torch.cuda.Event(enable_timing=True)\ne.record(s)\n",
    "import torch\nwith on_device(d):\n    e = torch.cuda.Event(enable_timing=True)\n    e.record()\n",
    "import torch\nwith torch.cuda.device(d):\n    ok = torch.cuda.is_bf16_supported(including_emulation=False)\n",
    "import torch\ntorch.cuda.set_per_process_memory_fraction(0.5, device)\n",
    "import torch\ntorch.cuda.set_rng_state(state, device)\n",
    "import torch\ntorch.cuda.empty_cache()\n",
    "import torch\ni = torch.cuda.current_device()\n",
    "def f(m):\n    return m.record()\n",  # a measurement's .record(), not an event's
])
def test_the_check_accepts_calls_that_name_the_device(source: str) -> None:
    assert check_source(source) == []
