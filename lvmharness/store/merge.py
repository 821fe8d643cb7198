"""Merging run folders (shards of a sweep, runs on several machines) into one run folder.

The merged folder is an ordinary run folder whose writers are the writers of every source: each source writer's
records become ``records/<n>-<writer>.jsonl`` (whole records only: a line cut short by a kill was never a record),
each writer's env becomes ``env/<n>-<writer>.json``, and ``sources.json`` lists every source with its path, record
count and its own merged env (each shard's ``env.json`` kept as it was). ``results.json`` and ``env.json`` are then
the usual merged views.

The same case id in two sources from one machine (same fingerprint; records without one count as one unknown
machine) is an error that names the cases: two numbers for one experiment need a human decision, not a silent pick.
The same case on two machines is kept twice: it is two experiments, and readers tell them apart by ``fingerprint``.
Repeats inside one source (a re-run appending to its run id) are that run's own history and stay as they are.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvmharness.core.errors import UserError
from lvmharness.core.fileio import atomic_write_bytes, atomic_write_json, json_line
from lvmharness.store.loading import (
    ENV_DIR,
    RECORDS_DIR,
    env_files,
    load_env,
    load_env_file,
    load_records,
    writer_files,
)
from lvmharness.store.records import record_fingerprint
from lvmharness.store.run_folder import refresh_env_view, refresh_results_view

SOURCES_FILE = "sources.json"
MAX_NAMED = 20  # duplicate case ids named in the error before "... and N more"


class MergeError(UserError, ValueError):
    """Sources that cannot be merged as they are; the message says which cases or folders and why."""


@dataclass(frozen=True)
class MergeResult:
    out: Path
    records: int
    sources: int


def _writer_records(source: Path) -> list[tuple[str, list[dict[str, Any]]]]:
    """(writer name, its records) of a run folder; a folder from before per-writer files is one writer."""
    files = writer_files(source)
    if files:
        return [(p.stem, load_records(p)) for p in files]
    return [(f"{source.name}-legacy", load_records(source))]


def _writer_envs(source: Path) -> list[tuple[str, dict[str, Any]]]:
    files = env_files(source)
    if files:
        return [(p.stem, load_env_file(p)) for p in files]
    env = load_env(source)
    return [(f"{source.name}-legacy", env)] if env else []


def _duplicates(sources: Sequence[tuple[Path, list[dict[str, Any]]]]) -> list[str]:
    seen: dict[tuple[str, str], set[Path]] = defaultdict(set)
    for path, records in sources:
        for rec in records:
            seen[(rec["case_id"], record_fingerprint(rec))].add(path)
    return [
        f"{case} (machine {fp}) in {', '.join(sorted(str(p) for p in paths))}"
        for (case, fp), paths in sorted(seen.items())
        if len(paths) > 1
    ]


def merge_runs(sources: Sequence[Path | str], out: Path | str) -> MergeResult:
    """Merge run folders into the new run folder ``out``; raises MergeError (nothing written) when they conflict."""
    dest = Path(out)
    paths = [Path(s) for s in sources]
    if not paths:
        raise MergeError("nothing to merge: name at least one run folder")
    for p in paths:
        if not p.is_dir():
            raise MergeError(f"{p}: not a run folder (expected a folder holding records/ or results.json)")
    if len({p.resolve() for p in paths}) != len(paths):
        raise MergeError("the same run folder is named twice")
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise MergeError(f"{dest}: already exists and is not an empty folder; merge into a new folder")
    if any(dest.resolve() == p.resolve() or p.resolve() in dest.resolve().parents for p in paths):
        raise MergeError(f"{dest}: the merged folder cannot be inside a source")
    writers = [(p, _writer_records(p)) for p in paths]
    dups = _duplicates([(p, [r for _, recs in ws for r in recs]) for p, ws in writers])
    if dups:
        more = f"\n  ... and {len(dups) - MAX_NAMED} more" if len(dups) > MAX_NAMED else ""
        raise MergeError(
            f"{len(dups)} case id(s) were measured more than once on the same machine; merge keeps one number per "
            "case and machine, so drop or re-run one side:\n  " + "\n  ".join(dups[:MAX_NAMED]) + more
        )
    listing: list[dict[str, Any]] = []
    total = 0
    for n, (path, ws) in enumerate(writers, 1):
        for name, recs in ws:
            atomic_write_bytes(dest / RECORDS_DIR / f"{n}-{name}.jsonl", b"".join(json_line(r) for r in recs))
            total += len(recs)
        for name, env in _writer_envs(path):
            atomic_write_json(dest / ENV_DIR / f"{n}-{name}.json", {**env, "writer": f"{n}-{name}"})
        listing.append({
            "source": str(path.resolve()),
            "records": sum(len(recs) for _, recs in ws),
            "run_ids": sorted({r.get("run_id", "") for _, recs in ws for r in recs}),
            "writers": [name for name, _ in ws],
            "env": load_env(path),
        })
    atomic_write_json(dest / SOURCES_FILE, listing)
    refresh_env_view(dest)
    refresh_results_view(dest)
    return MergeResult(dest, total, len(paths))
