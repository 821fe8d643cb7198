"""The result record (schema v1) and the run folder that many processes write at once.

A run lives in ``<out>/<run-id>/``::

    records/<writer>.jsonl   one file per writing process (host, pid, random tag): one JSON record per line,
                             appended and fsync'd before ``RunStore.add`` returns
    env/<writer>.json        what that writer ran on; only that writer replaces it (atomically), e.g. when a
                             peak probe adds a number
    results.json             the merged view: a JSON list of every writer's records
    env.json                 the merged view of env/*.json

Many writers (pytest-xdist workers, shards of a sweep, a re-run that appends to a run id) share a folder through
per-writer append-only files rather than a file lock around read-merge-write:

- No process ever rewrites data another owns, so no interleaving of writers can lose a record, and ``kill -9`` at
  any instant costs at most the line being written: a line without its newline is an unfinished record, which
  readers skip (``add`` had not returned, so it was never reported as written).
- Nothing relies on locks: advisory locks are not reliably honoured on the network filesystems that shards on many
  nodes share, and a lock file left by a killed holder blocks everyone after it.
- An append costs one record; rewriting the growing list after each case costs O(n) per case, O(n^2) per run.

The price is that the views can be stale (a writer killed before its session end). They are rebuilt by each
writer's ``close`` and by every reader (``load_records``, ``load_env``) when missing or stale, and rebuilding is
lock-free too (see ``_refresh``). Views and other whole files are replaced atomically: temp file in the same
folder, fsync, rename, fsync of the folder. A reader therefore always sees a valid list.

The JSON Schema of a record is shipped as ``lvmharness/schema/result-v1.schema.json``. Extend the schema, never
silently change a field's meaning.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import math
import os
import re
import secrets
import socket
import tempfile
import traceback
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from lvmharness.core import procfs
from lvmharness.core.oom import is_oom
from lvmharness.store.record_schema import record_schema, validate_records

SCHEMA_VERSION = 1
STATUSES = ("ok", "oom", "error", "skipped")
PHASES = ("inference", "train", "finetune")
# Torch-free names of the dtype modes a record can carry (the schema's ``dtype`` enum): storage dtypes first, then
# AMP modes (fp32 weights, autocast compute). The torch dtypes behind them are ``devices.DTYPES`` and
# ``execution.DTYPE_MODES``; the CLI takes its choices from here so it need not import torch to parse arguments.
STORAGE_DTYPE_NAMES = ("fp32", "bf16", "fp16")
DTYPE_NAMES = (*STORAGE_DTYPE_NAMES, "amp_bf16", "amp_fp16")
RESULTS_FILE = "results.json"
ENV_FILE = "env.json"
RECORDS_DIR = "records"
ENV_DIR = "env"
_RUN_ID_RE = re.compile(r"[A-Za-z0-9._-]{1,200}")


class ResultsFileError(ValueError):
    """A results file or run folder that cannot be read; the message names the file and the problem."""


_EPOCH = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_ONE_MS = _dt.timedelta(milliseconds=1)
_last_run_ms = 0


def new_run_id(now: _dt.datetime | None = None) -> str:
    """Start-ordered and unique: UTC time to the millisecond plus 6 random hex digits.

    ``20261130T073631.042Z-f575a4``. Sorting ids as strings sorts runs by start time, which is what
    tools that read several runs (and a user's ``ls``) rely on: two runs that start in the same
    second must not fall back to the random suffix for their order. Within one process the
    millisecond stamp is forced strictly upward, so back-to-back runs (a phase 1 then phase 2 in
    one script) keep their order even inside one millisecond or across a clock step back; the
    random suffix keeps concurrent processes apart.
    """
    global _last_run_ms
    t = now or _dt.datetime.now(_dt.UTC)
    ms = (t - _EPOCH) // _ONE_MS  # integer arithmetic: no float rounding at the millisecond edge
    if now is None:
        ms = max(ms, _last_run_ms + 1)
        _last_run_ms = ms
    stamp = _EPOCH + ms * _ONE_MS
    return f"{stamp:%Y%m%dT%H%M%S}.{ms % 1000:03d}Z-{secrets.token_hex(3)}"


def validate_run_id(run_id: str) -> str:
    """A run id names a folder inside the results folder and nothing else: letters, digits, ``.``, ``_``, ``-``;
    no ``..`` (so never a parent), no ``/`` (so never absolute or nested). Returns it unchanged, or raises
    ValueError saying what is valid."""
    if not _RUN_ID_RE.fullmatch(run_id) or ".." in run_id or run_id == ".":
        raise ValueError(
            f"run id {run_id!r} is not valid: use 1-200 letters, digits, '.', '_' or '-', without '..' "
            "(it names one folder inside the results folder), e.g. nightly-2026-11-30 or 20261130T073631.042Z-f575a4"
        )
    return run_id


def run_id_arg(text: str) -> str:
    """``validate_run_id`` as an argparse ``type=``: the message reaches the user as written."""
    import argparse

    try:
        return validate_run_id(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def utc_now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def case_id(
    metric: str,
    model: str,
    device: str,
    dtype: str,
    batch_size: int | None,
    img_size: int | None,
    options: Mapping[str, Any] | None = None,
) -> str:
    """The id of a case, the same string that pytest shows in brackets (``-k`` selects on it)."""
    return f"{metric}[{case_label(model, device, dtype, batch_size, img_size, options)}]"


def case_label(
    model: str,
    device: str,
    dtype: str,
    batch_size: int | None,
    img_size: int | None,
    options: Mapping[str, Any] | None = None,
) -> str:
    parts = [model, device.replace(":", ""), dtype]
    if batch_size is not None:
        parts.append(f"b{batch_size}")
    if img_size is not None:
        parts.append(str(img_size))
    for key, val in sorted((options or {}).items()):
        if val is True:
            parts.append(key)
        elif val not in (False, None):
            parts.append(f"{key}={val}")
    return "-".join(parts)


def _json_safe(obj: Any) -> Any:
    """JSON has no NaN/inf: store them as null rather than writing a file other tools reject."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    if obj is None or isinstance(obj, str | int | bool):
        return obj
    return str(obj)


def _umask() -> int:
    """The process umask, read without changing it where Linux exposes it (``os.umask`` can only set it)."""
    try:
        return int(procfs.status_value("Umask") or "", 8)
    except ValueError:  # no /proc (not Linux, or not mounted)
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write(path: Path, write: Callable[[BinaryIO], object]) -> None:
    """Write through ``write`` so that ``path`` always holds the old or the new complete file, never a torn one:
    a temp file in the same folder, fsync, rename, fsync of the folder. The file gets the mode a plain ``open``
    would give (0666 less the umask), not mkstemp's 0600. A link is followed (the file it names is replaced, the
    link kept); a folder, device or FIFO at ``path`` is refused, never replaced (``outputs.write_target``)."""
    from lvmharness.core.outputs import write_target

    path = write_target(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_dir(path.parent)


def atomic_write_json(path: Path, obj: Any) -> None:
    """JSON (non-finite numbers as null) written atomically."""
    text = json.dumps(_json_safe(obj), indent=1, allow_nan=False) + "\n"
    atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))


@dataclass
class CaseRecorder:
    """Filled in by the code that measures a case; turned into a record when the case ends."""

    identity: dict[str, Any]
    values: dict[str, Any] = field(default_factory=dict)
    provenance: dict[str, Any] = field(default_factory=dict)
    status: str = "ok"
    error: str | None = None

    def skip(self, reason: str) -> None:
        self.status, self.error = "skipped", reason


def record_identity(
    *,
    metric: str,
    model: str,
    alias: str,
    family: str,
    device: str,
    dtype: str,
    batch_size: int | None,
    img_size: int | None,
    phase: str = "inference",
    options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """The identity fields of a result record (what was measured, how), in the record's key order. Every front
    end (bench cases, train.py, the Python API, ``lvm latency``) builds them here; ``make_record`` adds the rest.
    ``model`` is the model as records name it (timm name, ``torchvision:NAME``, ``module:callable``), ``alias``
    as the user named it (the case id uses it)."""
    return {
        "metric": metric,
        "model": model,
        "alias": alias,
        "family": family,
        "device": device,
        "dtype": dtype,
        "batch_size": batch_size,
        "img_size": img_size,
        "phase": phase,
        "options": dict(options or {}),
    }


def make_record(
    *,
    run_id: str,
    metric: str,
    model: str,
    alias: str,
    family: str,
    device: str,
    dtype: str,
    batch_size: int | None,
    img_size: int | None,
    phase: str = "inference",
    options: Mapping[str, Any] | None = None,
    status: str = "ok",
    error: str | None = None,
    values: Mapping[str, Any] | None = None,
    provenance: Mapping[str, Any] | None = None,
    case: str | None = None,
) -> dict[str, Any]:
    if status not in STATUSES:
        raise ValueError(f"status {status!r} is not one of {STATUSES}")
    if phase not in PHASES:
        raise ValueError(f"phase {phase!r} is not one of {PHASES}")
    ident = record_identity(metric=metric, model=model, alias=alias, family=family, device=device, dtype=dtype,
                            batch_size=batch_size, img_size=img_size, phase=phase, options=options)
    return {
        "schema": SCHEMA_VERSION,
        "run_id": run_id,
        "case_id": case or case_id(metric, alias, device, dtype, batch_size, img_size, ident["options"]),
        **ident,
        "status": status,
        "error": error,
        "values": dict(values or {}),
        "provenance": dict(provenance or {}),
        "created_utc": utc_now(),
    }


class RunStore:
    """One writer (one process) of a run folder; any number of them may write the same run at once.

    ``add`` appends the record as one line to this writer's own ``records/<writer>.jsonl`` and fsyncs it before
    returning: once ``add`` has returned, the record survives a crash or a ``kill -9`` of this or any other writer.
    ``results.json`` / ``env.json`` (the merged views) are rebuilt by ``close`` and by readers.
    """

    def __init__(
        self,
        root: Path | str,
        run_id: str | None = None,
        *,
        writer: str | None = None,
        fingerprint: str | None = None,
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
    def fingerprint(self) -> str:
        """This machine's fingerprint, stamped on every record that does not carry one."""
        if self._fingerprint is None:
            from lvmharness.runtime.machine import fingerprint

            self._fingerprint = fingerprint()
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
            raise ValueError(f"record run_id {rec.get('run_id')!r} does not belong to run {self.run_id!r}")
        rec.setdefault("fingerprint", self.fingerprint)
        if self.provenance:
            rec["provenance"] = {**self.provenance, **dict(rec.get("provenance") or {})}
        line = json.dumps(_json_safe(rec), allow_nan=False, separators=(",", ":")) + "\n"
        self._open_folder()
        append_durably(self.records_path, line.encode("utf-8"))
        self.written.append(rec)
        return rec

    def write_env(self, env: Mapping[str, Any]) -> None:
        """This writer's environment (its own file, replaced atomically when it learns more), then the view."""
        self._open_folder()
        atomic_write_json(self.own_env_path, {**dict(env), "writer": self.writer, "run_id": self.run_id})
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
            message = f"{type(exc).__name__}: {exc}"
            rec.status, rec.error = status, message
            prov = dict(rec.provenance)
            if status == "error":
                prov["traceback"] = traceback.format_exc(limit=8)
            self.add(
                make_record(
                    run_id=self.run_id, status=status, error=message, values=rec.values, provenance=prov,
                    **rec.identity,
                )
            )
            if status != "oom":
                raise
        else:
            self.add(
                make_record(
                    run_id=self.run_id, status=rec.status, error=rec.error, values=rec.values,
                    provenance=rec.provenance, **rec.identity,
                )
            )


def writer_name(label: str | None = None) -> str:
    """``<host>[-<label>]-<pid>-<6 hex>``: unique per RunStore even when a pid is reused or a host name repeats."""
    host = re.sub(r"[^A-Za-z0-9.-]", "_", socket.gethostname())[:64] or "host"
    parts = [host]
    if label:
        parts.append(re.sub(r"[^A-Za-z0-9.-]", "_", label)[:32])
    parts += [str(os.getpid()), secrets.token_hex(3)]
    return "-".join(parts)


def _fsync_dir(path: Path) -> None:
    dir_fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


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
        _fsync_dir(path.parent)
        _fsync_dir(path.parent.parent)


def _import_legacy(run_dir: Path) -> None:
    """A run folder from before per-writer files holds only ``results.json``: its records become
    ``records/legacy.jsonl`` (once, whoever gets there first: a hard link never replaces an existing file)."""
    records_dir = run_dir / RECORDS_DIR
    results = run_dir / RESULTS_FILE
    if not results.is_file() or any(records_dir.glob("*.jsonl")):
        return
    old = _load_list(results)
    text = "".join(json.dumps(r, allow_nan=False, separators=(",", ":")) + "\n" for r in old)
    fd, tmp = tempfile.mkstemp(prefix=".legacy.", suffix=".tmp", dir=records_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(text.encode("utf-8"))
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~_umask())
        with contextlib.suppress(FileExistsError):
            os.link(tmp, records_dir / "legacy.jsonl")
    finally:
        Path(tmp).unlink(missing_ok=True)
    _fsync_dir(records_dir)


def _read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Whole lines only: a last line without its newline is a record whose write was cut short (not finished,
    so never reported as written) and is skipped; any other bad line is an error naming the file and line."""
    data = path.read_bytes()
    lines = data.split(b"\n")
    complete = lines[:-1]  # the part after the last newline is empty or an unfinished record
    out: list[dict[str, Any]] = []
    for i, raw in enumerate(complete, 1):
        if not raw.strip():
            continue
        try:
            rec = json.loads(raw)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise ResultsFileError(f"{path}:{i}: not a valid JSON record ({exc})") from exc
        if not isinstance(rec, dict):
            raise ResultsFileError(f"{path}:{i}: expected a JSON object per line")
        out.append(rec)
    return out


def torn_lines(path: Path | str) -> list[str]:
    """What readers skip, in words: one line per writer file (of a run folder, or one ``.jsonl`` file) that ends in
    an unfinished record. Front ends that read runs (report, merge, compare) print these, so a record cut short
    (``kill -9`` mid-write, a full disk) is never dropped without a word."""
    p = Path(path)
    files = [p] if p.is_file() and p.suffix == ".jsonl" else writer_files(p if p.is_dir() else p.parent)
    notes = []
    for f in files:
        try:
            data = f.read_bytes()
        except OSError:
            continue  # the reader itself reports an unreadable file
        tail = data[data.rfind(b"\n") + 1:]
        if tail.strip():
            notes.append(f"skipped the last line of {f} ({len(tail):,} bytes with no newline): an unfinished record, "
                         "its write cut short (a killed process, a full disk), so never reported as written")
    return notes


def _check_schema(where: Path, records: list[dict[str, Any]]) -> None:
    """Each record against the JSON Schema: an error names the file, the record, its case id and the field."""
    validate_records(where, records, ResultsFileError)


def writer_files(run_dir: Path) -> list[Path]:
    records_dir = run_dir / RECORDS_DIR
    return sorted(records_dir.glob("*.jsonl")) if records_dir.is_dir() else []


def _merged_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every writer's records, ordered by creation time (then writer, then line): deterministic for a given folder,
    and a re-run's record of a case comes after the first run's."""
    keyed: list[tuple[str, str, int, dict[str, Any]]] = []
    for path in writer_files(run_dir):
        recs = _read_jsonl(path)
        _check_schema(path, recs)
        keyed += [(str(r.get("created_utc") or ""), path.name, i, r) for i, r in enumerate(recs)]
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


def _view_text(obj: Any) -> str:
    return json.dumps(_json_safe(obj), indent=1, allow_nan=False) + "\n"


def _refresh(path: Path, compute: Callable[[], Any], write: bool = True) -> Any:
    """Make ``path`` hold ``compute()``'s view, lock-free: write (atomically) if it differs, then compute again
    and repeat while a writer added something meanwhile. Whoever renames a view last has then checked, after its
    rename, that nothing was missing: the final view holds every record finished before it."""
    obj = compute()
    for _ in range(100):
        text = _view_text(obj)
        try:
            current = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            current = None
        if current == text or not write:
            return obj
        try:
            atomic_write(path, lambda fh, t=text: fh.write(t.encode("utf-8")))  # type: ignore[misc]
        except OSError:
            return obj  # a read-only copy of a run: reading must still work
        obj = compute()
    return obj


def results_view_current(run_dir: Path, records: list[dict[str, Any]]) -> bool:
    """Whether ``results.json`` holds exactly ``records`` (False when a read-only folder kept it from being
    written): a summary names it only then."""
    try:
        return (run_dir / RESULTS_FILE).read_text(encoding="utf-8") == _view_text(records)
    except (OSError, UnicodeDecodeError):
        return False


def refresh_results_view(run_dir: Path, write: bool = True) -> list[dict[str, Any]]:
    """Rebuild ``results.json`` from the writers' files when missing or stale; returns the records."""
    recs: list[dict[str, Any]] = _refresh(run_dir / RESULTS_FILE, lambda: _merged_records(run_dir), write)
    return recs


def _load_env_file(path: Path) -> dict[str, Any]:
    try:
        env = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ResultsFileError(f"{path}: not a readable env file ({exc})") from exc
    if not isinstance(env, dict):
        raise ResultsFileError(f"{path}: expected a JSON object")
    return env


def merge_envs(envs: Mapping[str, Mapping[str, Any]]) -> dict[str, Any]:
    """One env from the writers' envs: the earliest writer's, plus what the others add.

    A key the others agree on, or a dict they extend without contradiction (peak probes of several devices), is
    merged; a key on which a writer differs is listed under ``writer_differences`` (nothing is dropped). Writers on
    several machines (a merged sweep) also get ``machines``: fingerprint -> its parts.
    """
    if not envs:
        return {}
    names = sorted(envs, key=lambda n: (str(envs[n].get("created_utc") or ""), n))
    base: dict[str, Any] = {k: v for k, v in envs[names[0]].items() if k != "writer"}
    differ: dict[str, dict[str, Any]] = {}
    for name in names[1:]:
        for key, val in envs[name].items():
            if key in ("writer", "created_utc"):
                continue
            if key not in base:
                base[key] = val
            elif base[key] == val:
                continue
            elif (isinstance(base[key], dict) and isinstance(val, dict)
                  and all(base[key].get(k, v) == v for k, v in val.items())):
                base[key] = {**base[key], **val}
            else:
                differ.setdefault(name, {})[key] = val
    base["writers"] = names
    if differ:
        base["writer_differences"] = differ
    machines = {e["fingerprint"]: e["machine"] for e in envs.values() if "fingerprint" in e and "machine" in e}
    if len(machines) > 1:
        base["machines"] = dict(sorted(machines.items()))
    return base


def _merged_env(run_dir: Path) -> dict[str, Any]:
    env_dir = run_dir / ENV_DIR
    files = sorted(env_dir.glob("*.json")) if env_dir.is_dir() else []
    return merge_envs({p.stem: _load_env_file(p) for p in files})


def refresh_env_view(run_dir: Path, write: bool = True) -> dict[str, Any]:
    """Rebuild ``env.json`` from ``env/<writer>.json`` when missing or stale; returns the merged env."""
    if not any((run_dir / ENV_DIR).glob("*.json")):
        return _load_env_file(run_dir / ENV_FILE) if (run_dir / ENV_FILE).is_file() else {}
    env: dict[str, Any] = _refresh(run_dir / ENV_FILE, lambda: _merged_env(run_dir), write)
    return env


def load_env(path: Path | str) -> dict[str, Any] | None:
    """The env of a run folder (or of the folder of a results file), None if it has none."""
    p = Path(path)
    run_dir = p if p.is_dir() else p.parent
    env = refresh_env_view(run_dir)
    return env or None


def _load_list(p: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ResultsFileError(f"{p}: expected a JSON list of record objects")
    # Python's json reads NaN and Infinity, which other JSON tools reject: non-finite numbers become null, as when
    # the store writes them.
    return [_json_safe(r) for r in data]


def load_records(path: Path | str) -> list[dict[str, Any]]:
    """Every record of a run folder (all writers; ``results.json`` rebuilt if stale), of a results file, or of one
    writer's ``.jsonl`` file, with a clear error for anything malformed."""
    p = Path(path)
    if p.is_file() and p.suffix == ".jsonl":
        recs = _read_jsonl(p)
        _check_schema(p, recs)
        return recs
    run_dir = p if p.is_dir() else p.parent
    if (p.is_dir() or p.name == RESULTS_FILE) and writer_files(run_dir):
        return refresh_results_view(run_dir)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.exists():
        raise ResultsFileError(f"{p}: no such results file (expected a run folder or a {RESULTS_FILE})")
    data = _load_list(p)
    _check_schema(p, data)
    return data


def schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one record, value keys included (``lvmharness.store.record_schema``)."""
    return record_schema()
