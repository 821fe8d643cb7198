"""Durable file I/O: whole files replaced atomically, lines appended durably, JSONL read by whole lines. Standard
library only.

The run store (``lvmharness.store``), the history index and every writer of a JSON or checkpoint file share these,
so that "a reader always sees the old or the new complete file" and "a killed writer costs at most the line it was
writing" hold the same way everywhere:

- ``atomic_write``: temp file in the same folder, fsync, rename, fsync of the folder (rename is atomic within one
  filesystem, POSIX rename(2); the folder fsync makes the new directory entry itself durable).
- ``append_durably``: one ``O_APPEND`` write, fsync before returning; a failed write is cut back off the file.
- ``read_jsonl``: whole lines only; the bytes after the last newline are an unfinished line and are skipped.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from lvmharness.core import procfs
from lvmharness.core.errors import UserError
from lvmharness.core.outputs import write_target


class JsonlError(UserError, ValueError):
    """A JSONL file with a line that is not a JSON object; the message names the file and the line."""


def json_safe(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null rather than writing a file other tools reject."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return str(obj)


def json_text(obj: Any) -> str:
    """The text of a JSON file of the project: indented one field per line, non-finite numbers as null."""
    return json.dumps(json_safe(obj), indent=1, allow_nan=False) + "\n"


def json_line(obj: Any, *, sort_keys: bool = False) -> bytes:
    """One compact JSON line (newline included), as appended to a JSONL file."""
    text = json.dumps(json_safe(obj), allow_nan=False, separators=(",", ":"), sort_keys=sort_keys)
    return (text + "\n").encode("utf-8")


def umask() -> int:
    """The process umask, read without changing it where Linux exposes it (``os.umask`` can only set it)."""
    try:
        return int(procfs.status_value("Umask") or "", 8)
    except ValueError:  # no /proc (not Linux, or not mounted)
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write`` so that ``path`` always holds the old or the new complete file, never a torn one:
    a temp file in the same folder, fsync, rename, fsync of the folder. The file gets the mode a plain ``open``
    would give (0666 less the umask), not mkstemp's 0600. A link is followed (the file it names is replaced, the
    link kept); a folder, device or FIFO at ``path`` is refused, never replaced (``outputs.write_target``)."""
    path = write_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON (non-finite numbers as null) written atomically."""
    atomic_write_bytes(path, json_text(obj).encode("utf-8"))


def append_durably(path: Path, data: bytes) -> None:
    """Append ``data`` to ``path`` and fsync before returning. A failed write is cut back off the file, so the file
    only ever holds whole lines plus, after a kill in the middle of a write, one unterminated tail."""
    created = not path.exists()
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | getattr(os, "O_CLOEXEC", 0), 0o666)
    try:
        start = os.fstat(fd).st_size
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
        except BaseException:
            os.ftruncate(fd, start)
            raise
    finally:
        os.close(fd)
    if created:  # the new file's directory entry must be durable too, or a crash could lose the whole file
        fsync_dir(path.parent)
        fsync_dir(path.parent.parent)


def read_jsonl(path: Path, what: str = "JSON record", error: type[Exception] = JsonlError
               ) -> list[tuple[int, dict[str, Any]]]:
    """(line number, object) of each whole line: a last line without its newline was cut short (its writer never
    returned, so it was never reported as written) and is skipped, blank lines too; any other line that is not a
    JSON object raises ``error`` naming the file, the line and ``what`` a line should be."""
    lines = path.read_bytes().split(b"\n")[:-1]  # the part after the last newline is empty or an unfinished line
    out: list[tuple[int, dict[str, Any]]] = []
    for i, raw in enumerate(lines, 1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise error(f"{path}:{i}: not a valid {what} ({exc})") from exc
        if not isinstance(obj, dict):
            raise error(f"{path}:{i}: expected a JSON object per line")
        out.append((i, obj))
    return out


def unfinished_tail(path: Path) -> int:
    """Bytes after the last newline of ``path`` that are not blank (an unfinished line); 0 when none or unreadable
    (the reader itself reports an unreadable file)."""
    try:
        data = path.read_bytes()
    except OSError:
        return 0
    tail = data[data.rfind(b"\n") + 1:]
    return len(tail) if tail.strip() else 0
