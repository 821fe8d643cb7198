"""Where output goes: every output location of the project checked before any work starts. Torch-free, standard
library only.

Every front end (the ``lvm`` subcommands, ``train.py``, the pytest plugin, the architecture page) resolves each
place it will write through ``check_output_file`` or ``check_output_folder`` while it parses its arguments, so a
location that cannot take the output is one line and exit 2 before a model is built or a number measured; nothing
is written by the check (a writability probe is a temporary file removed at once).

The rules, one for the whole project:

- An empty path is refused (it would silently mean the current folder).
- A file target is a regular file or a name that can be created; a folder, a character or block device (such as
  ``/dev/null``), a FIFO or a socket is refused: files are written to a temporary name and renamed over the target
  (``fileio.atomic_write``), and renaming over a device or a FIFO would replace it with a plain file.
- A symbolic link is followed on purpose: the file it names is written (and replaced), the link itself is kept.
  The same holds for links among the folders of the path.
- ``..`` is resolved before anything is created: ``x/../y`` names ``./y`` and never creates a stray ``x``.
- The folder that will receive the output (or, when it does not exist yet, its nearest existing ancestor) must be
  a folder this process can write into. The check creates and removes a temporary file there, because neither the
  mode bits (root ignores them) nor ``os.access`` see every reason a write fails (a read-only bind mount is
  ``EROFS`` at the write itself on some systems; ACLs; network filesystems mapping root to nobody).
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from lvmharness.core.errors import UserError


class OutputPathError(UserError, ValueError):
    """An output location that cannot take the output; the message says why and what would do."""


def _kind(mode: int) -> str:
    """What a non-regular, non-folder file is, in words."""
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def _resolve(text: str | os.PathLike[str], what: str) -> tuple[Path, Path]:
    """(the path as given, the path with links and ``..`` resolved); refuses an empty path and NUL bytes."""
    raw = os.fspath(text)
    if not raw.strip():
        raise OutputPathError(f"the {what} is an empty path; name it, e.g. ./results")
    if "\0" in raw:
        raise OutputPathError(f"the {what} {raw!r} contains a NUL byte, which no file name can hold")
    given = Path(raw)
    # realpath resolves every link and '..' it can and keeps the rest lexically: 'x/../y' with no x becomes ./y.
    return given, Path(os.path.realpath(given))


def _shown(given: Path, real: Path) -> Path:
    """The path to hand back: as the user wrote it unless links or '..' make it name another place."""
    return given if Path(os.path.abspath(given)) == real else real


def _probe_writable(folder: Path, target: Path | str, what: str) -> None:
    """Create and remove a temporary file in ``folder`` (an existing folder): the only test that sees every cause."""
    try:
        fd, name = tempfile.mkstemp(prefix=".lvm-write-check-", dir=folder)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise OutputPathError(f"cannot write the {what} {target}: {folder} is not writable ({reason})") from None
    os.close(fd)
    os.unlink(name)


def _nearest_existing(path: Path) -> Path:
    for p in (path, *path.parents):
        if os.path.lexists(p):
            return p
    return Path("/")


def _check_ancestors(real: Path, given: Path | str, what: str, *, folder: bool) -> Path:
    """The nearest existing ancestor of ``real``: a writable folder, else OutputPathError."""
    anc = _nearest_existing(real.parent)
    try:
        mode = anc.stat().st_mode
    except OSError as exc:
        raise OutputPathError(f"cannot write the {what} {given}: {anc} is not reachable ({exc.strerror})") from None
    if not stat.S_ISDIR(mode):
        kind = "a file" if stat.S_ISREG(mode) else _kind(mode)
        if folder:
            raise OutputPathError(f"{anc} is {kind}; give a folder to write into ({given} cannot be created "
                                  "under it)")
        raise OutputPathError(f"{anc} is {kind}, so the {what} {given} cannot be created")
    _probe_writable(anc, given, what)
    return anc


def _existing_mode(real: Path, given: Path, doing: str) -> int | None:
    """``st_mode`` of what stands at ``real`` (links followed), None where nothing does; a dangling link or an
    unreadable entry is OutputPathError naming what was being done (``doing``)."""
    if not os.path.lexists(real):
        return None
    try:
        return real.stat().st_mode
    except OSError as exc:
        raise OutputPathError(f"cannot {doing} {given}: {exc.strerror}") from None


def check_output_file(text: str | os.PathLike[str], *, what: str = "output file") -> Path:
    """A file to write (replacing a regular file there): returns the path to write, links followed."""
    given, real = _resolve(text, what)
    mode = _existing_mode(real, given, f"write the {what}")
    if mode is not None:
        if stat.S_ISDIR(mode):
            raise OutputPathError(f"{given} is a folder; give a file name to write, e.g. "
                                  f"{given / 'out.json'}")
        if not stat.S_ISREG(mode):
            raise OutputPathError(f"{given} is {_kind(mode)}, not a regular file: the {what} is written to a "
                                  "temporary file renamed over the target, which would replace it; give a file name")
    _check_ancestors(real, given, what, folder=False)
    return _shown(given, real)


def check_output_folder(text: str | os.PathLike[str], *, what: str = "output folder") -> Path:
    """A folder to write into (created later, when the work starts, if missing): returns the path to use."""
    given, real = _resolve(text, what)
    mode = _existing_mode(real, given, f"write into the {what}")
    if mode is not None:
        if not stat.S_ISDIR(mode):
            kind = "a file" if stat.S_ISREG(mode) else _kind(mode)
            raise OutputPathError(f"{given} is {kind}; give a folder to write into")
        _probe_writable(real, given, what)
    else:
        _check_ancestors(real, given, what, folder=True)
    return _shown(given, real)


def write_target(path: Path) -> Path:
    """The file an atomic write of ``path`` replaces: links followed, '..' resolved; a folder, device, FIFO or
    socket is refused (the last line of defence for writers that did not check earlier)."""
    real = Path(os.path.realpath(path))
    try:
        mode = real.stat().st_mode
    except FileNotFoundError:
        return real
    except OSError:
        return real  # let the write itself report the error
    if stat.S_ISDIR(mode):
        raise OutputPathError(f"{path} is a folder; give a file name to write")
    if not stat.S_ISREG(mode):
        raise OutputPathError(f"{path} is {_kind(mode)}; lvmharness writes regular files only and will not replace it")
    return real
