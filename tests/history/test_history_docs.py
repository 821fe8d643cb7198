"""The GitHub Actions workflow of docs/history.md: every step that runs ``lvm`` runs here, as written, on run folders
the test writes (in place of the smoke benches), first for pushes to main, then for a pull request."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from lvmharness.history.store import History
from tests.helpers.history_helpers import make_run

pytestmark = pytest.mark.slow  # a dozen lvm processes

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "history.md"


def workflow() -> dict[str, Any]:
    text = DOC.read_text(encoding="utf-8")
    block = re.search(r"```yaml\n(.*?)```", text, re.S)
    assert block, "docs/history.md has no yaml block"
    wf: dict[str, Any] = yaml.safe_load(block.group(1))
    return wf


def lvm_steps(event: str) -> list[dict[str, Any]]:
    """The steps that run lvm and would run for this event (push to main or pull_request), in order."""
    out = []
    for step in workflow()["jobs"]["bench"]["steps"]:
        run, cond = step.get("run", ""), step.get("if", "")
        if "lvm " not in run:
            continue
        if cond == "github.event_name == 'pull_request'" and event != "pull_request":
            continue
        if cond == "github.ref == 'refs/heads/main'" and event != "push":
            continue
        assert cond in ("", "github.event_name == 'pull_request'", "github.ref == 'refs/heads/main'"), cond
        out.append(step)
    return out


def run_step(step: dict[str, Any], cwd: Path, run_id: str) -> subprocess.CompletedProcess[str]:
    script = step["run"].replace("${{ github.run_id }}", run_id)
    assert "${{" not in script, script
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}",
           "GITHUB_STEP_SUMMARY": str(cwd / "summary.txt"), "GITHUB_OUTPUT": str(cwd / "output.txt")}
    return subprocess.run(["bash", "-e", "-c", script], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def test_workflow_commands_run_as_written(tmp_path: Path) -> None:
    push_steps = lvm_steps("push")
    pr_steps = lvm_steps("pull_request")
    assert [s["name"] for s in push_steps] == [
        "Add the run to the history", "Detect change points", "Publish the site and the summary",
        "Keep the last 500 runs per machine", "Fail on an open regression"]
    assert [s["name"] for s in pr_steps] == ["Gate the pull request against the last 5 runs of main"]

    # A pull request before main has any history: no baseline (exit 3) does not fail the job.
    make_run(tmp_path / "results", "ci-0", latency_ms=10.0, seed=0)
    first = run_step(pr_steps[0], tmp_path, "0")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "no baseline on this runner yet" in first.stdout

    # Five earlier pushes to main at a steady 10 ms (filed in-process: the steps themselves are run below), then
    # one push through every step: all pass. Each run names its commit in env.json, as a run in a checkout does.
    hist = History(tmp_path / ".lvm-history", create=True)
    for i in range(1, 6):
        hist.add(make_run(tmp_path / "results", f"ci-{i}", latency_ms=10.0, seed=i, commit=f"c{i:02d}"), branch="main")
    make_run(tmp_path / "results", "ci-6", latency_ms=10.0, seed=6, commit="c06")
    for step in push_steps:
        done = run_step(step, tmp_path, "6")
        assert done.returncode == 0, (step["name"], done.stdout, done.stderr)
    assert (tmp_path / "site" / "index.html").is_file() and (tmp_path / "site" / "benchmark.json").is_file()
    assert "Performance history" in (tmp_path / "summary.txt").read_text()

    # A pull request 30 % slower fails its gate; one at the same speed passes.
    make_run(tmp_path / "results", "ci-pr-slow", latency_ms=13.0, seed=50)
    assert run_step(pr_steps[0], tmp_path, "pr-slow").returncode == 1
    make_run(tmp_path / "results", "ci-pr-ok", latency_ms=10.0, seed=51)
    ok = run_step(pr_steps[0], tmp_path, "pr-ok")
    assert ok.returncode == 0, ok.stdout + ok.stderr

    # Main regresses by 20 % (two pushes filed, the third through every step): the last step fails the job.
    for i in (7, 8):
        hist.add(make_run(tmp_path / "results", f"ci-{i}", latency_ms=12.0, seed=i, commit=f"c{i:02d}"), branch="main")
    make_run(tmp_path / "results", "ci-9", latency_ms=12.0, seed=9, commit="c09")
    results = [run_step(step, tmp_path, "9") for step in push_steps]
    assert [r.returncode for r in results] == [0, 0, 0, 0, 1]
    assert "open regression" in results[-1].stderr
