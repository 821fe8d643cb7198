"""A clean, non-editable install: the wheel holds one top-level name (lvmharness), and in a fresh venv the plugin,
``lvm`` and ``lvm viz`` (with the page's static files) work from any folder."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
import urllib.request
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOT_SOURCE = (".git", ".venv", "results", "data", "build", "dist", "*.egg-info", "__pycache__", ".mypy_cache",
              ".ruff_cache", ".pytest_cache", ".benchmarks", ".baseline-run")


def run(cmd: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, f"{cmd}\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    return proc


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_wheel_installs_only_lvmharness_and_works_from_a_fresh_venv(tmp_path: Path) -> None:
    # Build from a copy, so the build leaves nothing in the checkout.
    src = tmp_path / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(*NOT_SOURCE))
    run([sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "--no-build-isolation", "-q", "-w",
         str(tmp_path / "dist")], cwd=tmp_path)
    (wheel,) = (tmp_path / "dist").glob("lvmharness-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert {n.split("/")[0] for n in names} == {"lvmharness", wheel.name.split("-py")[0] + ".dist-info"}
    # Every package of the source tree is in the wheel, with the page's static files and the schema.
    packages = {str(p.parent.relative_to(ROOT)) for p in (ROOT / "lvmharness").rglob("__init__.py")}
    assert {p for p in packages if f"{p}/__init__.py" not in names} == set()
    for needed in ("lvmharness/viz/app.py", "lvmharness/viz/static/index.html", "lvmharness/bench/plugin.py",
                   "lvmharness/schema/result-v1.schema.json"):
        assert needed in names

    # A fresh venv whose only extra path is the dependencies' site-packages (torch, flask, pytest, ...).
    venv = tmp_path / "venv"
    run([sys.executable, "-m", "venv", "--without-pip", str(venv)], cwd=tmp_path)
    py = venv / "bin" / "python"
    site = Path(run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                    cwd=tmp_path).stdout.strip())
    before = set(os.listdir(site))
    run([sys.executable, "-m", "pip", "--python", str(py), "install", "--no-deps", "-q", str(wheel)], cwd=tmp_path)
    added = set(os.listdir(site)) - before
    assert added == {"lvmharness", wheel.name.split("-py")[0] + ".dist-info"}, added
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "elsewhere"
    work.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = run([str(py), "-c", "import lvmharness.viz.app as a; print(a.__file__)"], cwd=work, env=env).stdout
    assert where.strip().startswith(str(site / "lvmharness" / "viz"))
    assert "--lvm-profile" in run([str(py), "-m", "pytest", "--help"], cwd=work, env=env).stdout  # the plugin
    assert "vit_base_patch16_224" in run([str(venv / "bin" / "lvm"), "models"], cwd=work, env=env).stdout

    port = free_port()
    server = subprocess.Popen([str(venv / "bin" / "lvm"), "viz", "--port", str(port), "--no-generate", "--graphs",
                               str(work / "graphs")], cwd=work, env=env, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True)
    try:
        page = None
        for _ in range(120):
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2) as resp:
                    page = resp.read().decode()
                break
            except OSError:
                assert server.poll() is None, server.communicate()[0][-2000:]
                time.sleep(0.5)
        assert page is not None and "<html" in page.lower()
        for path in ("/api/models", "/static/main.js", "/static/style.css"):  # the static files came with it
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=5) as resp:
                assert resp.status == 200 and resp.read()
    finally:
        server.terminate()
        server.wait(timeout=30)
