"""Reading run folders and results files. Reading is read-only: it never writes a file, not even a stale view.

A run lives in ``<out>/<run-id>/``::

    records/<writer>.jsonl   one file per writing process (host, pid, random tag): one JSON record per line,
                             appended and fsync'd before ``RunStore.add`` returns (``store.run_folder``)
    env/<writer>.json        what that writer ran on; only that writer replaces it (atomically)
    results.json             the merged view: a JSON list of every writer's records
    env.json                 the merged view of env/*.json

The writers' files are the truth; the views are conveniences for other tools, rebuilt by the writers
(``run_folder.refresh_results_view``: ``RunStore.close``, the pytest plugin's session end, ``lvm merge``). A reader
merges the writers' files itself, so a view left stale (a writer killed before its session end) or never written
(a read-only copy) costs nothing: it reads what a rebuild would write, and writes nothing.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from lvmharness.core.errors import UserError
from lvmharness.core.fileio import json_safe, json_text, read_jsonl, unfinished_tail
from lvmharness.store.record_schema import validate_records

RESULTS_FILE = "results.json"
ENV_FILE = "env.json"
RECORDS_DIR = "records"
ENV_DIR = "env"


class ResultsFileError(UserError, ValueError):
    """A results file or run folder that cannot be read; the message names the file and the problem."""


def writer_files(run_dir: Path) -> list[Path]:
    records_dir = run_dir / RECORDS_DIR
    return sorted(records_dir.glob("*.jsonl")) if records_dir.is_dir() else []


def env_files(run_dir: Path) -> list[Path]:
    env_dir = run_dir / ENV_DIR
    return sorted(env_dir.glob("*.json")) if env_dir.is_dir() else []


def read_writer_file(path: Path) -> list[dict[str, Any]]:
    """One writer's records, whole lines only (``fileio.read_jsonl``), each checked against the JSON Schema."""
    recs = [rec for _, rec in read_jsonl(path, "JSON record", ResultsFileError)]
    validate_records(path, recs, ResultsFileError)
    return recs


def merged_records(run_dir: Path) -> list[dict[str, Any]]:
    """Every writer's records, ordered by creation time (then writer, then line): deterministic for a given folder,
    and a re-run's record of a case comes after the first run's."""
    keyed: list[tuple[str, str, int, dict[str, Any]]] = []
    for path in writer_files(run_dir):
        recs = read_writer_file(path)
        keyed += [(str(r.get("created_utc") or ""), path.name, i, r) for i, r in enumerate(recs)]
    keyed.sort(key=lambda k: k[:3])
    return [k[3] for k in keyed]


def load_env_file(path: Path) -> dict[str, Any]:
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


def merged_env(run_dir: Path) -> dict[str, Any]:
    """The merged env of the writers' ``env/*.json``; a folder without them: its ``env.json`` as it is, or {}."""
    files = env_files(run_dir)
    if not files:
        return load_env_file(run_dir / ENV_FILE) if (run_dir / ENV_FILE).is_file() else {}
    return merge_envs({p.stem: load_env_file(p) for p in files})


def load_env(path: Path | str) -> dict[str, Any] | None:
    """The env of a run folder (or of the folder of a results file), None if it has none."""
    p = Path(path)
    env = merged_env(p if p.is_dir() else p.parent)
    return env or None


def load_list(p: Path) -> list[dict[str, Any]]:
    """A ``results.json``: a JSON list of record objects."""
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ResultsFileError(f"{p}: not valid JSON ({exc})") from exc
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        raise ResultsFileError(f"{p}: expected a JSON list of record objects")
    # Python's json reads NaN and Infinity, which other JSON tools reject: non-finite numbers become null, as when
    # the store writes them.
    return [json_safe(r) for r in data]


def load_records(path: Path | str) -> list[dict[str, Any]]:
    """Every record of a run folder (all writers, merged as ``results.json`` would hold them), of a results file,
    or of one writer's ``.jsonl`` file, with a clear error for anything malformed. Writes nothing."""
    p = Path(path)
    if p.is_file() and p.suffix == ".jsonl":
        return read_writer_file(p)
    run_dir = p if p.is_dir() else p.parent
    if (p.is_dir() or p.name == RESULTS_FILE) and writer_files(run_dir):
        return merged_records(run_dir)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.exists():
        raise ResultsFileError(f"{p}: no such results file (expected a run folder or a {RESULTS_FILE})")
    data = load_list(p)
    validate_records(p, data, ResultsFileError)
    return data


def results_view_current(run_dir: Path, records: list[dict[str, Any]]) -> bool:
    """Whether ``results.json`` holds exactly ``records`` (False when a read-only folder kept it from being
    written): a summary names it only then."""
    try:
        return (run_dir / RESULTS_FILE).read_text(encoding="utf-8") == json_text(records)
    except (OSError, UnicodeDecodeError):
        return False


def torn_lines(path: Path | str) -> list[str]:
    """What readers skip, in words: one line per writer file (of a run folder, or one ``.jsonl`` file) that ends in
    an unfinished record. Front ends that read runs (report, merge, compare) print these, so a record cut short
    (``kill -9`` mid-write, a full disk) is never dropped without a word."""
    p = Path(path)
    files = [p] if p.is_file() and p.suffix == ".jsonl" else writer_files(p if p.is_dir() else p.parent)
    notes = []
    for f in files:
        tail = unfinished_tail(f)
        if tail:
            notes.append(f"skipped the last line of {f} ({tail:,} bytes with no newline): an unfinished record, "
                         "its write cut short (a killed process, a full disk), so never reported as written")
    return notes
