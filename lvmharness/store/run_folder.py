"""The run folder that many processes write at once: one ``RunStore`` per writing process.

The layout is in ``store.loading``. Many writers (pytest-xdist workers, shards of a sweep, a re-run that appends to
a run id) share a folder through per-writer append-only files rather than a file lock around read-merge-write:

- No process ever rewrites data another owns, so no interleaving of writers can lose a record, and ``kill -9`` at
  any instant costs at most the line being written: a line without its newline is an unfinished record, which
  readers skip (``add`` had not returned, so it was never reported as written).
- Nothing relies on locks: advisory locks are not reliably honoured on the network filesystems that shards on many
  nodes share, and a lock file left by a killed holder blocks everyone after it.
- An append costs one record; rewriting the growing list after each case costs O(n) per case, O(n^2) per run.

The price is that the views (``results.json``, ``env.json``) can be stale (a writer killed before its session
end). Writers rebuild them (``close``, ``refresh_*_view``), lock-free (see ``_refresh``); readers never write and
merge the writers' files themselves (``loading.load_records``). Views are replaced atomically
(``core.fileio.atomic_write``), so a reader of a view always sees a valid list.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import socket
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lvmharness.core import fileio
from lvmharness.core.oom import is_oom
from lvmharness.store.loading import (
    ENV_DIR,
    ENV_FILE,
    RECORDS_DIR,
    RESULTS_FILE,
    load_list,
    load_records,
    merged_env,
    merged_records,
    writer_files,
)
from lvmharness.store.records import CaseRecorder, RecordValueError, make_record
from lvmharness.store.run_ids import new_run_id, validate_run_id


def writer_name(label: str | None = None) -> str:
    """``<host>[-<label>]-<pid>-<6 hex>``: unique per RunStore even when a pid is reused or a host name repeats."""
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "host"
    parts = [host]
    if label:
        parts.append(re.sub(r"[^A-Za-z0-9.-]", "_", label)[:32])
    parts += [str(os.getpid()), secrets.token_hex(3)]
    return "-".join(parts)


class RunStore:
    """One writer (one process) of a run folder; any number of them may write the same run at once.

    ``add`` appends the record as one line to this writer's own ``records/<writer>.jsonl`` and fsyncs it before
    returning: once ``add`` has returned, the record survives a crash or a ``kill -9`` of this or any other writer.
    ``results.json`` / ``env.json`` (the merged views) are rebuilt by ``close``.

    ``fingerprint`` is this machine's (``runtime.machine.fingerprint``), stamped on every record that carries
    none; a callable is called at the first ``add`` (reading the machine imports torch, which the store never
    does itself). Without one, records go without a fingerprint (readers call that machine "unknown").
    """

    def __init__(
        self,
        root: Path | str,
        run_id: str | None = None,
        *,
        writer: str | None = None,
        fingerprint: str | Callable[[], str] | None = None,
        provenance: Mapping[str, Any] | None = None,
    ) -> None:
        self.run_id = validate_run_id(run_id) if run_id is not None else new_run_id()
        self.run_dir = Path(root) / self.run_id
        self.results_path = self.run_dir / RESULTS_FILE
        self.env_path = self.run_dir / ENV_FILE
        self.writer = writer_name(writer)
        self.records_path = self.run_dir / RECORDS_DIR / f"{self.writer}.jsonl"
        self.own_env_path = self.run_dir / ENV_DIR / f"{self.writer}.json"
        self.written: list[dict[str, Any]] = []  # what this writer added, in order
        self._fingerprint = fingerprint
        # Facts about this writer that hold for each of its records (an xdist worker's GPU, its share of the cores):
        # added to every record's provenance; a key the record sets itself wins.
        self.provenance = dict(provenance or {})
        self._created = False

    @property
    def fingerprint(self) -> str | None:
        """This machine's fingerprint, stamped on every record that does not carry one (None: not known)."""
        if callable(self._fingerprint):
            self._fingerprint = self._fingerprint()
        return self._fingerprint

    @property
    def records(self) -> list[dict[str, Any]]:
        """Every record of the run folder, of every writer (read now)."""
        return load_records(self.run_dir) if self.run_dir.is_dir() else []

    def _open_folder(self) -> None:
        if self._created:
            return
        (self.run_dir / RECORDS_DIR).mkdir(parents=True, exist_ok=True)
        _import_legacy(self.run_dir)
        self._created = True

    def add(self, record: Mapping[str, Any]) -> dict[str, Any]:
        rec = dict(record)
        if rec.get("run_id") != self.run_id:
            raise RecordValueError(f"record run_id {rec.get('run_id')!r} does not belong to run {self.run_id!r}")
        if self.fingerprint is not None:
            rec.setdefault("fingerprint", self.fingerprint)
        if self.provenance:
            rec["provenance"] = {**self.provenance, **dict(rec.get("provenance") or {})}
        self._open_folder()
        fileio.append_durably(self.records_path, fileio.json_line(rec))
        self.written.append(rec)
        return rec

    def write_env(self, env: Mapping[str, Any]) -> None:
        """This writer's environment (its own file, replaced atomically when it learns more), then the view."""
        self._open_folder()
        fileio.atomic_write_json(self.own_env_path, {**dict(env), "writer": self.writer, "run_id": self.run_id})
        refresh_env_view(self.run_dir)

    def close(self) -> list[dict[str, Any]]:
        """Rebuild the merged views now that this writer is done; returns every record of the run."""
        if not self.run_dir.is_dir():
            return []
        refresh_env_view(self.run_dir)
        return refresh_results_view(self.run_dir)

    def __enter__(self) -> RunStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def case(self, **identity: Any) -> Iterator[CaseRecorder]:
        """Record one case whatever happens inside the block.

        Normal exit: the recorder's status (``ok`` unless the code set another). Out-of-memory: an ``oom``
        record, and the exception is swallowed: an OOM is a result. Any other exception: an ``error`` record
        with the message, then the exception propagates so the caller (pytest) reports it.
        """
        rec = CaseRecorder(identity=dict(identity))
        try:
            yield rec
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt | SystemExit | GeneratorExit):
                raise
            status = "oom" if is_oom(exc) else "error"
            # pytest's skip/xfail exceptions are not errors: record them as skipped.
            if type(exc).__name__ in ("Skipped", "XFailed"):
                status = "skipped"
            rec.status, rec.error = status, f"{type(exc).__name__}: {exc}"
            prov = dict(rec.provenance)
            if status == "error":
                prov["traceback"] = traceback.format_exc(limit=8)
            self._add_case(rec, prov)
            if status != "oom":
                raise
        else:
            self._add_case(rec, rec.provenance)

    def _add_case(self, rec: CaseRecorder, provenance: Mapping[str, Any]) -> None:
        self.add(make_record(run_id=self.run_id, status=rec.status, error=rec.error, values=rec.values,
                             provenance=provenance, **rec.identity))


def _import_legacy(run_dir: Path) -> None:
    """A run folder from before per-writer files holds only ``results.json``: its records become
    ``records/legacy.jsonl`` (once, whoever gets there first: a hard link never replaces an existing file)."""
    records_dir = run_dir / RECORDS_DIR
    results = run_dir / RESULTS_FILE
    if not results.is_file() or any(records_dir.glob("*.jsonl")):
        return
    old = load_list(results)
    data = b"".join(fileio.json_line(r) for r in old)
    fd, tmp = tempfile.mkstemp(prefix=".legacy.", suffix=".tmp", dir=records_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~fileio.umask())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, records_dir / "legacy.jsonl")
    finally:
        Path(tmp).unlink(missing_ok=True)
    fileio.fsync_dir(records_dir)


def _refresh(path: Path, compute: Callable[[], Any]) -> Any:
    """Make ``path`` hold ``compute()``'s view, lock-free: write (atomically) if it differs, then compute again
    and repeat while a writer added something meanwhile. Whoever renames a view last has then checked, after its
    rename, that nothing was missing: the final view holds every record finished before it."""
    obj = compute()
    for _ in range(100):
        text = fileio.json_text(obj)
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current == text:
            return obj
        try:
            fileio.atomic_write_bytes(path, text.encode("utf-8"))
        except OSError:
            return obj  # a read-only copy of a run: the records are still in the writers' files
        obj = compute()
    return obj


def refresh_results_view(run_dir: Path) -> list[dict[str, Any]]:
    """Rebuild ``results.json`` from the writers' files when missing or stale; returns the records. A writer's job
    (readers call ``loading.merged_records``, which writes nothing)."""
    if not writer_files(run_dir) and (run_dir / RESULTS_FILE).is_file():
        return load_records(run_dir)  # a legacy folder: its results.json is the truth, nothing to rebuild
    recs: list[dict[str, Any]] = _refresh(run_dir / RESULTS_FILE, lambda: merged_records(run_dir))
    return recs


def refresh_env_view(run_dir: Path) -> dict[str, Any]:
    """Rebuild ``env.json`` from ``env/<writer>.json`` when missing or stale; returns the merged env."""
    if not any((run_dir / ENV_DIR).glob("*.json")):
        return merged_env(run_dir)
    env: dict[str, Any] = _refresh(run_dir / ENV_FILE, lambda: merged_env(run_dir))
    return env
