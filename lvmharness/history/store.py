"""The history store: run folders filed by machine fingerprint and commit, and an index that only grows.

A history is a folder anywhere the user points it (a CI cache, an artifact, a checkout of an orphan branch)::

    index/<writer>.jsonl                         one file per writing process; one JSON entry per line, appended
                                                 and fsync'd before ``add`` returns (``core.fileio.append_durably``)
    runs/<fingerprint>/<commit>/<run-id>/        a copy of the run folder (records/, env/, results.json, env.json)

The index is the run store's design reused: per-writer append-only files instead of a lock around
read-merge-write, so any number of ``lvm history add`` at once lose nothing and a ``kill -9`` costs at most the
entry being written (a line without its newline is skipped by readers). A run folder is copied into a temp folder
next to its place and renamed into place, so a reader never sees half a run.

Entries are of two kinds: ``add`` (a run: commit, parents, branch, commit time, fingerprint, contended share,
harness version, hash of the benchmark definition) and ``prune`` (a tombstone: the run's folder was deleted).
Pruning therefore appends too: the index never loses a line, while the run folders it points to stay bounded.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import os
import shutil
import subprocess
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lvmharness import __version__
from lvmharness.core.clock import utc_now, utc_now_us
from lvmharness.core.errors import UserError
from lvmharness.core.fileio import append_durably, json_line, read_jsonl
from lvmharness.store.loading import ENV_DIR, RECORDS_DIR, ResultsFileError, load_env, load_records, writer_files
from lvmharness.store.records import is_contended
from lvmharness.store.run_folder import writer_name

INDEX_DIR = "index"
RUNS_DIR = "runs"
INDEX_SCHEMA = 1
# Provenance fields that define the experiment (not its outcome): a change of any of them, or of the case's
# identity, is a new benchmark definition and opens a new segment of its series.
DEFINITION_PROVENANCE = ("counter", "rounds", "warmup_rounds", "config", "settings", "timm_overrides")
IDENTITY_FIELDS = ("metric", "model", "device", "dtype", "batch_size", "img_size", "phase", "options")


class HistoryError(UserError, ValueError):
    """A history that cannot be read or written as asked; the message says what was wrong and what is valid."""


def definition_hash(record: Mapping[str, Any]) -> str:
    """12 hex digits of SHA-256 over what defines a case's experiment: its identity and the provenance settings
    in ``DEFINITION_PROVENANCE`` (canonical JSON, sorted keys)."""
    prov = record.get("provenance") or {}
    parts = {
        "identity": {k: record.get(k) for k in IDENTITY_FIELDS},
        "provenance": {k: prov.get(k) for k in DEFINITION_PROVENANCE if k in prov},
    }
    text = json.dumps(parts, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]


def bench_hash(records: Iterable[Mapping[str, Any]]) -> str:
    """The run's benchmark definition: a hash over the sorted (case id, definition hash) pairs."""
    pairs = sorted({(str(r.get("case_id")), definition_hash(r)) for r in records})
    return hashlib.sha256(json.dumps(pairs).encode("utf-8")).hexdigest()[:12]


def _git(args: list[str], cwd: Path | None = None) -> str | None:
    try:
        out = subprocess.run(["git", *args], cwd=str(cwd or Path.cwd()), capture_output=True, text=True,
                             timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return out or None


@dataclass(frozen=True)
class CommitInfo:
    commit: str
    parents: tuple[str, ...]
    branch: str | None
    time_utc: str


def commit_info(commit: str | None, branch: str | None, env: Mapping[str, Any] | None,
                repo: Path | None = None) -> CommitInfo:
    """What the index records about a run's commit. The commit: as given, else the run's own ``git_commit``
    (env.json), else the checkout's HEAD. Parents and commit time come from git when it knows the commit; the
    branch: as given, else the CI's (``GITHUB_HEAD_REF``/``GITHUB_REF_NAME``), else the checkout's."""
    sha = commit or (env or {}).get("git_commit") or _git(["rev-parse", "HEAD"], repo)
    if not sha:
        raise HistoryError("no commit for this run: pass --commit SHA (the run's env.json has no git_commit and "
                           "this folder is not a git checkout)")
    sha = str(sha)
    if not all(c.isalnum() or c in "._-/" for c in sha) or len(sha) > 200:
        raise HistoryError(f"commit {sha!r} is not valid: use a commit hash or a tag of letters, digits, '.', "
                           "'_', '-', '/'")
    full = _git(["rev-parse", "--verify", "--quiet", f"{sha}^{{commit}}"], repo)
    parents: tuple[str, ...] = ()
    when = None
    if full:
        sha = full
        line = _git(["rev-list", "--parents", "-n", "1", full], repo) or ""
        parents = tuple(line.split()[1:])
        when = _git(["show", "-s", "--format=%cI", full], repo)
    if branch is None:
        branch = os.environ.get("GITHUB_HEAD_REF") or os.environ.get("GITHUB_REF_NAME") or None
        if branch is None:
            head = _git(["rev-parse", "--abbrev-ref", "HEAD"], repo)
            branch = head if head and head != "HEAD" else None
    if when:
        t = _dt.datetime.fromisoformat(when).astimezone(_dt.UTC)
        time_utc = t.isoformat(timespec="seconds")
    else:
        time_utc = utc_now()
    return CommitInfo(sha, parents, branch, time_utc)


def _is_run_folder(path: Path) -> bool:
    return path.is_dir() and (bool(writer_files(path)) or (path / "results.json").is_file())


def _folder_part(text: str) -> str:
    return "".join(c if c.isalnum() or c in "._-" else "_" for c in text)[:80] or "_"


class History:
    """One history folder. Reading never needs a lock; each writing process appends to its own index file."""

    def __init__(self, root: Path | str, *, create: bool = False) -> None:
        self.root = Path(root)
        if create:  # the folders are made by the first write, so that bad input leaves nothing behind
            if self.root.exists() and not self.root.is_dir():
                raise HistoryError(f"history {self.root} is a file: pass a folder (it is created when missing)")
        elif not (self.root / INDEX_DIR).is_dir():
            raise HistoryError(f"{self.root} is not a history folder (no {INDEX_DIR}/): create one with "
                               f"`lvm history --history {self.root} add RUN`")
        self._writer: str | None = None

    # --- the index ---------------------------------------------------------------------------------------------

    def _append(self, entry: Mapping[str, Any]) -> None:
        if self._writer is None:
            self._writer = writer_name("history")
            (self.root / INDEX_DIR).mkdir(parents=True, exist_ok=True)
        append_durably(self.root / INDEX_DIR / f"{self._writer}.jsonl", json_line(dict(entry), sort_keys=True))

    def raw_entries(self) -> list[dict[str, Any]]:
        """Every index entry of every writer, whole lines only, ordered by when they were appended."""
        out: list[tuple[str, str, int, dict[str, Any]]] = []
        index = self.root / INDEX_DIR
        for path in sorted(index.glob("*.jsonl")) if index.is_dir() else []:
            for i, entry in read_jsonl(path, "index entry", HistoryError):
                if entry.get("kind") not in ("add", "prune"):
                    raise HistoryError(f"{path}:{i}: not an index entry (expected kind 'add' or 'prune')")
                out.append((str(entry.get("added_utc", "")), path.name, i, entry))
        out.sort(key=lambda t: t[:3])
        return [t[3] for t in out]

    def entries(self) -> list[dict[str, Any]]:
        """The runs in the history now (adds not pruned since), in commit-time order (then the time added)."""
        live: dict[str, dict[str, Any]] = {}
        for e in self.raw_entries():
            if e["kind"] == "add":
                live.setdefault(e["key"], e)
            else:
                live.pop(e["key"], None)
        return sorted(live.values(), key=lambda e: (e["time_utc"], e["added_utc"], e["key"]))

    def branches(self) -> list[str]:
        return sorted({str(e["branch"]) for e in self.entries() if e.get("branch")})

    def entries_of(self, branch: str | None) -> list[dict[str, Any]]:
        """The runs of one branch (all runs with None); an unknown branch is a user error naming the known ones."""
        entries = self.entries()
        if branch is None:
            return entries
        chosen = [e for e in entries if e.get("branch") == branch]
        if not chosen:
            known = ", ".join(self.branches()) or "none (the history is empty)"
            raise HistoryError(f"branch {branch!r} has no runs in history {self.root}; branches: {known}")
        return chosen

    def run_path(self, entry: Mapping[str, Any]) -> Path:
        return self.root / str(entry["path"])

    # --- adding, pruning, merging ------------------------------------------------------------------------------

    def add(self, run: Path | str, *, commit: str | None = None, branch: str | None = None,
            repo: Path | None = None) -> dict[str, Any]:
        """Copy a run folder into the history and append its index entry; returns the entry."""
        src = Path(run)
        if not _is_run_folder(src):
            raise HistoryError(f"{src} is not a run folder (expected a folder with records/*.jsonl or "
                               "results.json, as `pytest benches/ --lvm-out DIR` writes)")
        try:
            records = load_records(src)
            env = load_env(src) or {}
        except ResultsFileError as exc:
            raise HistoryError(f"{src} is not a readable run folder: {exc}") from None
        if not records:
            raise HistoryError(f"{src} holds no records: nothing to add")
        info = commit_info(commit, branch, env, repo)
        fps = sorted({str(r.get("fingerprint") or "unknown") for r in records})
        fp = str(env.get("fingerprint") or fps[0])
        run_id = str(records[0].get("run_id") or src.name)
        key = f"{fp}/{info.commit}/{run_id}"
        rel = f"{RUNS_DIR}/{_folder_part(fp)}/{_folder_part(info.commit)}/{_folder_part(run_id)}"
        if any(e["key"] == key for e in self.entries()):
            raise HistoryError(f"run {run_id} of commit {info.commit[:12]} on machine {fp} is already in "
                               f"{self.root} (a run is added once; re-run the benches for a new run id)")
        self._copy_run(src, self.root / rel)
        ok = [r for r in records if r.get("status") == "ok"]
        entry = {
            "kind": "add", "schema": INDEX_SCHEMA, "key": key, "path": rel, "run_id": run_id,
            "commit": info.commit, "parents": list(info.parents), "branch": info.branch, "time_utc": info.time_utc,
            "added_utc": utc_now_us(),
            "fingerprint": fp, "fingerprints": fps,
            "contended_share": round(sum(is_contended(r) for r in ok) / len(ok), 6) if ok else 0.0,
            "harness_version": str(env.get("lvmharness") or __version__),
            "bench_hash": bench_hash(records), "records": len(records),
        }
        self._append(entry)
        return entry

    def _copy_run(self, src: Path, dest: Path) -> None:
        """Whole files of the run folder into a temp folder beside ``dest``, then one rename: all or nothing."""
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = dest.parent / f".{dest.name}.{writer_name('tmp')}"
        try:
            tmp.mkdir()
            for sub in (RECORDS_DIR, ENV_DIR):
                if (src / sub).is_dir():
                    shutil.copytree(src / sub, tmp / sub)
            for name in ("results.json", "env.json"):
                if (src / name).is_file():
                    shutil.copy2(src / name, tmp / name)
            try:
                os.rename(tmp, dest)
            except OSError as exc:
                if dest.is_dir():  # another writer filed the same run at the same moment: theirs stands
                    raise HistoryError(f"run {dest.name} is already in {self.root} (added by another writer)") \
                        from None
                raise exc
        finally:
            if tmp.exists():
                shutil.rmtree(tmp, ignore_errors=True)

    def prune(self, *, keep_last: int | None = None, before: str | None = None,
              branch: str | None = None) -> list[dict[str, Any]]:
        """Delete old runs (per branch and fingerprint, keep the newest ``keep_last``; or every run whose commit
        time is before ``before``, an ISO date) and append a tombstone for each. Returns the pruned entries."""
        if keep_last is None and before is None:
            raise HistoryError("prune needs --keep-last N or --before DATE (nothing would be pruned)")
        entries = self.entries_of(branch)
        doomed: list[dict[str, Any]] = []
        if before is not None:
            try:
                cutoff = _dt.datetime.fromisoformat(before)
            except ValueError:
                raise HistoryError(f"--before {before!r} is not an ISO date (e.g. 2026-01-31)") from None
            if cutoff.tzinfo is None:
                cutoff = cutoff.replace(tzinfo=_dt.UTC)
            doomed += [e for e in entries if _dt.datetime.fromisoformat(e["time_utc"]) < cutoff]
        if keep_last is not None:
            groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
            for e in entries:
                groups.setdefault((str(e.get("branch")), e["fingerprint"]), []).append(e)
            for group in groups.values():
                doomed += group[:-keep_last] if keep_last else group
        seen: set[str] = set()
        pruned = []
        for e in doomed:
            if e["key"] in seen:
                continue
            seen.add(e["key"])
            self._append({"kind": "prune", "schema": INDEX_SCHEMA, "key": e["key"],
                          "added_utc": utc_now_us()})
            shutil.rmtree(self.run_path(e), ignore_errors=True)
            pruned.append(e)
        return pruned

    def merge_from(self, other: History) -> int:
        """Every run of ``other`` (a history of another machine or shard) this one lacks: folder copied, entry
        appended as it was. Idempotent: merging twice adds nothing the second time. Returns runs added."""
        have = {e["key"] for e in self.entries()}
        gone = {e["key"] for e in self.raw_entries() if e["kind"] == "prune"}
        added = 0
        for e in other.entries():
            if e["key"] in have or e["key"] in gone:
                continue
            with contextlib.suppress(HistoryError):  # filed by a concurrent merge of the same run
                self._copy_run(other.run_path(e), self.root / e["path"])
            self._append(e)
            have.add(e["key"])
            added += 1
        return added

    def records(self, entry: Mapping[str, Any]) -> list[dict[str, Any]]:
        return load_records(self.run_path(entry))
