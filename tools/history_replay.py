"""30 commits of history from one real run of the smoke benches, replayed with known changes injected; then
``lvm history detect`` and the site, and a check that exactly the injected changes are found.

    nice -n 10 .venv/bin/python -m pytest benches/ --lvm-profile smoke --lvm-out runs --lvm-run-id smoke0 -q
    .venv/bin/python tools/history_replay.py runs/smoke0 -o replay/          # replay/history, replay/site

What is replayed (one commit checked out, its smoke run measured once; say so wherever these numbers are shown):
each of the 30 commits is a real git commit of a scratch repository (so the index gets real SHAs, parents and
commit times); its run is the measured run with, for every timed case, new raw samples times one per-commit factor
exp(N(0, 1 %)) (run-to-run noise of a quiet machine): ``--noise quiet`` (default) draws 20 rounds around the case's
measured median with 2 % spread (a quiet machine), ``--noise measured`` resamples the run's own raw samples with
replacement (as noisy as the machine was when the run was measured); the p50 is recomputed from them, the other
timed summaries dropped and the ``contended`` flag cleared (the measured run may have been taken on a busy machine:
the replay stands for a quiet one). Counted and memory values are replayed as
measured. Injected:

    commit 10   the first timed case 8 % slower from here on                          -> regression at 10
    commit 15   MACs (and FLOPs) of the first flops case 5 % more from here on         -> regression at 15
    commit 20   every timed case (latency, per-request latency) 12 % faster from here on -> improvement at 20
    commit 6    a contended run: every latency 40 % slower, flagged                   -> nothing (excluded)
    commit 25   another machine: new fingerprint, every latency 20 % faster           -> a new segment, nothing

Exit 0 when the alerts are exactly the expected ones, 1 otherwise.
"""

from __future__ import annotations

import argparse
import copy
import datetime as _dt
import math
import random
import subprocess
import sys
from pathlib import Path
from typing import Any

from lvmharness.core.stats import median
from lvmharness.history import site
from lvmharness.history.series import detect_all, open_regressions, tracks_from_history
from lvmharness.history.store import History
from lvmharness.store import keys
from lvmharness.store.loading import load_env, load_records
from lvmharness.store.run_folder import RunStore

COMMITS = 30
NEW_MACHINE = "feedfacefeedface"
QUIET_SAMPLE_CV = 0.02  # --noise quiet: spread of the 20 rounds of one run (log-normal sigma)


def _git_repo(where: Path) -> list[str]:
    """A scratch repository with COMMITS commits, one a day; their SHAs, oldest first."""
    where.mkdir(parents=True)
    git = ["git", "-C", str(where), "-c", "user.name=replay", "-c", "user.email=replay@example.org"]
    subprocess.run([*git, "init", "-q", "-b", "main"], check=True)
    shas = []
    start = _dt.datetime(2026, 11, 1, 12, tzinfo=_dt.UTC)
    for i in range(COMMITS):
        env_date = (start + _dt.timedelta(days=i)).isoformat()
        subprocess.run([*git, "commit", "-q", "--allow-empty", "-m", f"commit {i}", "--date", env_date],
                       check=True, env={"GIT_COMMITTER_DATE": env_date, "PATH": "/usr/bin:/bin"})
        shas.append(subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True,
                                   check=True).stdout.strip())
    return shas


def _p50_key(rec: dict[str, Any]) -> str | None:
    """The value key decided on the raw samples (``latency_ms_p50``, ``instance_latency_ms_p50``) when the record
    has it and its samples."""
    if rec.get("status") != "ok":
        return None
    for name, value in rec["values"].items():
        key = keys.get(name)
        if key is not None and key.rule == "samples" and isinstance(value, int | float) \
                and isinstance(rec["values"].get(key.samples or ""), list):
            return name
    return None


def _timed(rec: dict[str, Any]) -> bool:
    return _p50_key(rec) is not None


def replay_run(records: list[dict[str, Any]], i: int, rng: random.Random, first_latency: str,
               first_flops: str, noise: str = "quiet") -> tuple[list[dict[str, Any]], str | None]:
    """The records of commit ``i`` and the fingerprint to file them under (None: the measured one)."""
    out = []
    factor = math.exp(rng.gauss(0, 0.01))
    fingerprint = NEW_MACHINE if i >= 25 else None
    for rec in records:
        r = copy.deepcopy(rec)
        r["run_id"] = f"replay-{i:02d}"
        v = r["values"]
        if _timed(r):
            scale = factor
            if r["case_id"] == first_latency and i >= 10:
                scale *= 1.08
            if i >= 20:
                scale *= 0.88
            if i >= 25:
                scale *= 0.80
            busy = i == 6
            if busy:
                scale *= 1.40
            samples = [s for s in v["samples"] if isinstance(s, int | float)]
            if noise == "measured":
                v["samples"] = [samples[rng.randrange(len(samples))] * scale for _ in samples]
            else:
                level = median(samples)
                v["samples"] = [level * scale * math.exp(rng.gauss(0, QUIET_SAMPLE_CV)) for _ in range(20)]
            p50 = _p50_key(rec)
            assert p50 is not None
            v[p50] = median(v["samples"])
            for k in list(v):  # other timed summaries would disagree with the resampled p50: drop them
                key = keys.get(k)
                if key is not None and key.measured and k not in (p50, "samples"):
                    del v[k]
            v["contended"] = busy
        else:
            v.pop("contended", None)  # only the timed cases are replayed as measured on a quiet machine
        if r["case_id"] == first_flops and i >= 15:
            for k in ("macs", "flops"):
                if isinstance(v.get(k), int):
                    v[k] = round(v[k] * 1.05)
        if fingerprint:
            r["fingerprint"] = fingerprint
        out.append(r)
    return out, fingerprint


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a run folder of the smoke benches")
    p.add_argument("-o", "--output", required=True, help="a new folder for the history, the site and the runs")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--noise", choices=("quiet", "measured"), default="quiet",
                   help="quiet: 20 rounds around each case's measured median, 2 %% spread; measured: the run's own "
                        "raw samples resampled (as noisy as the machine was)")
    args = p.parse_args(argv)
    out = Path(args.output)
    if out.exists():
        print(f"{out} exists: pass a new folder", file=sys.stderr)
        return 2
    records = load_records(args.run)
    env = load_env(args.run) or {}
    latency = sorted(r["case_id"] for r in records if _timed(r))
    flops = sorted(r["case_id"] for r in records if r.get("status") == "ok" and isinstance(
        r["values"].get("macs"), int) and r["metric"] == "flops")
    if not latency or not flops:
        print(f"{args.run} needs timed latency cases and flops cases (run the smoke benches)", file=sys.stderr)
        return 2
    shas = _git_repo(out / "repo")
    rng = random.Random(args.seed)
    hist = History(out / "history", create=True)
    for i, sha in enumerate(shas):
        recs, fp = replay_run(records, i, rng, latency[0], flops[0], args.noise)
        store = RunStore(out / "runs", f"replay-{i:02d}", fingerprint=fp or env.get("fingerprint"))
        for r in recs:
            store.add(r)
        store.write_env({**env, "git_commit": sha, "fingerprint": fp or env.get("fingerprint")})
        store.close()
        hist.add(out / "runs" / f"replay-{i:02d}", commit=sha, branch="main", repo=out / "repo")
    tracks = tracks_from_history(hist, "main")
    alerts = detect_all(tracks)
    opened = open_regressions(tracks)
    site.write_site(hist, out / "site", branch="main")
    p50 = {r["case_id"]: _p50_key(r) for r in records if _timed(r)}
    expected = {(latency[0], str(p50[latency[0]]), 10, "regression")}
    expected |= {(flops[0], k, 15, "regression") for k in ("macs", "flops")
                 if any(k == t.key and t.case_id == flops[0] for t in tracks)}
    expected |= {(c, str(p50[c]), 20, "improvement") for c in latency}
    found = {(a.case_id, a.key, shas.index(a.commit), a.label) for a in alerts}
    print(f"{COMMITS} commits replayed from {args.run}, noise {args.noise} ({len(records)} records: "
          f"{len(latency)} timed cases, {len(flops)} flops cases); {len(tracks)} tracks, "
          f"{sum(len(t.segments) for t in tracks)} segments")
    print("| case | value | commit | label | expected | found |\n|---|---|---|---|---|---|")
    for row in sorted(expected | found, key=lambda r: (r[2], r[0], r[1])):
        print(f"| {row[0]} | {row[1]} | {row[2]} | {row[3]} | {'yes' if row in expected else 'no'} | "
              f"{'yes' if row in found else 'no'} |")
    print(f"open regressions: {[(a.case_id, a.key, shas.index(a.commit)) for a in opened]}")
    print(f"site: {out / 'site' / 'index.html'}")
    return 0 if found == expected else 1


if __name__ == "__main__":
    sys.exit(main())
