"""The benches on many processes, as users run them: pytest-xdist, --lvm-shard, lvm merge, lvm sweep.

Each end-to-end test runs a small slice of the smoke matrix (two tiny models, latency and MAC counting: 8 cases) so
the suite stays fast; the whole smoke profile is the same code path with more cases.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from lvmharness.bench import parallel
from lvmharness.bench.config import LvmConfig
from lvmharness.bench.session import LvmSession
from lvmharness.store.loading import load_records
from tests.helpers import runner

# Each test starts several pytest processes (xdist workers, shards, a submitit sweep): the slow suite.
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# The device is pinned: "auto" is CUDA on a GPU machine, and these ids are the CPU's.
SLICE = ("--lvm-profile", "smoke", "--lvm-models", "smoke_resnet,smoke_vit", "--lvm-device", "cpu",
         "-k", "forward_latency or macs")
# The slice's cases, written out by hand from the smoke profile: smoke_resnet is native at 64 px, smoke_vit at
# 32 px, batches 1 and 2; MAC counting runs once per (model, size) on meta, and its scaling record once per model.
SLICE_IDS = {
    "latency[smoke_resnet-cpu-fp32-b1-64]", "latency[smoke_resnet-cpu-fp32-b2-64]",
    "latency[smoke_vit-cpu-fp32-b1-32]", "latency[smoke_vit-cpu-fp32-b2-32]",
    "flops[smoke_resnet-meta-fp32-b1-64]", "flops[smoke_vit-meta-fp32-b1-32]",
    "flops_scaling[smoke_resnet-meta-fp32-b1-64]", "flops_scaling[smoke_vit-meta-fp32-b1-32]",
}
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def pytest_run(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return runner.run_pytest("benches/", *args, cpu=False, timeout=timeout)


def lvm(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return runner.run_lvm(*args, timeout=timeout)


def only_run(out: Path) -> Path:
    (run_dir,) = [p for p in out.iterdir() if p.is_dir() and not p.name.startswith(".")]
    return run_dir


@pytest.fixture(scope="module")
def plain_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("plain")
    proc = pytest_run(*SLICE, "--lvm-out", str(out))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = only_run(out)
    assert {r["case_id"] for r in load_records(run)} == SLICE_IDS
    return run


@pytest.mark.skipif(CORES < 2, reason="-n 2 needs two cores (one per worker)")
def test_xdist_writes_one_run_folder_with_the_plain_runs_cases(plain_run: Path, tmp_path: Path) -> None:
    proc = pytest_run(*SLICE, "-n", "2", "--lvm-out", str(tmp_path))
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run = only_run(tmp_path)
    assert f"run folder: {run}" in proc.stdout  # printed by the controller, from the folder its workers wrote
    records = load_records(run)
    assert sorted(r["case_id"] for r in records) == sorted(r["case_id"] for r in load_records(plain_run))
    workers = {r["provenance"]["parallel"]["xdist_worker"] for r in records}
    assert workers == {"gw0", "gw1"}
    # All cases of a model on one worker (the model is built once).
    by_model: dict[str, set[str]] = {}
    for r in records:
        by_model.setdefault(r["alias"], set()).add(r["provenance"]["parallel"]["xdist_worker"])
    assert all(len(w) == 1 for w in by_model.values()), by_model
    # Each worker timed on its own cores with as many torch threads: never two workers on one core.
    slices = {r["provenance"]["parallel"]["xdist_worker"]: tuple(r["provenance"]["parallel"]["cpu_affinity"])
              for r in records}
    assert not set(slices["gw0"]) & set(slices["gw1"])
    assert all(r["provenance"]["parallel"]["torch_threads"] == CORES // 2 for r in records)
    assert json.loads((run / "results.json").read_text()) == records  # the view is complete after the session


def test_more_xdist_workers_than_cores_is_refused(tmp_path: Path) -> None:
    proc = pytest_run(*SLICE, "-n", str(CORES + 1), "--lvm-device", "cpu", "--lvm-out", str(tmp_path), timeout=300)
    assert proc.returncode == 4, proc.stdout[-2000:] + proc.stderr[-2000:]  # pytest's usage error
    assert f"-n {CORES + 1} on {CORES} usable core(s)" in proc.stderr and f"use -n {CORES} or fewer" in proc.stderr
    assert not any(tmp_path.iterdir())


def collected(*args: str) -> list[str]:
    proc = pytest_run("--collect-only", "-q", *args, timeout=300)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return [line for line in proc.stdout.splitlines() if "::" in line]


def test_shards_of_the_smoke_profile_are_disjoint_and_cover_it() -> None:
    whole = collected("--lvm-profile", "smoke")
    shards = [collected("--lvm-profile", "smoke", f"--lvm-shard={k}/3") for k in (1, 2, 3)]
    assert all(shards) and len(whole) > 3
    assert sum(len(s) for s in shards) == len(whole)  # disjoint (no id twice)...
    assert set().union(*map(set, shards)) == set(whole)  # ...and together the whole matrix


def test_default_profile_shards_balance_expected_cost(tmp_path: Path) -> None:
    plan_file = tmp_path / "plan.json"
    proc = pytest_run("--collect-only", "-q", "--lvm-profile", "default", "--lvm-shard", "1/3",
                      "--lvm-shard-plan", str(plan_file), timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    plan = json.loads(plan_file.read_text())
    cost = {c["id"]: c["cost"] for c in plan["cases"]}
    # The costs are MACs per image x batch x metric weight. ViT-B/16 at 224 is 17.56 GMACs per image (Dosovitskiy
    # et al. 2021; DeiT-B the same network: Touvron et al. 2021, table 1, "17.6 GFLOPs"); latency weighs 20.
    vit_b1 = cost["benches/bench_latency.py::bench_forward_latency[vit-cpu-fp32-b1-224]"]
    assert vit_b1 == pytest.approx(17.56e9 * 20, rel=0.005)
    assert cost["benches/bench_latency.py::bench_forward_latency[vit-cpu-fp32-b8-224]"] == pytest.approx(8 * vit_b1)
    # The imbalance, summed here from the per-case costs and shards (not read back from the plan's own figure).
    sums = [sum(c["cost"] for c in plan["cases"] if c["shard"] == k) for k in (1, 2, 3)]
    assert max(sums) / min(sums) <= 1.5, sums
    # And the shard kept what the plan gave it.
    kept = {line for line in proc.stdout.splitlines() if "::" in line}
    assert kept == {c["id"] for c in plan["cases"] if c["shard"] == 1}


def test_merge_of_three_shards_equals_the_plain_run(plain_run: Path, tmp_path: Path) -> None:
    # The three shards run at once, as on three machines (each its own --lvm-out).
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "pytest", "benches/", "-p", "no:cacheprovider", *SLICE, f"--lvm-shard={k}/3",
             "--lvm-run-id", "sharded", "--lvm-out", str(tmp_path / f"s{k}")],
            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        for k in (1, 2, 3)
    ]
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        assert proc.returncode in (0, 5), out[-2000:]  # 5: a shard that got no case
    runs = [str(tmp_path / f"s{k}" / "sharded") for k in (1, 2, 3) if (tmp_path / f"s{k}" / "sharded").is_dir()]
    done = lvm("merge", *runs, "-o", str(tmp_path / "merged"))
    assert done.returncode == 0, done.stderr
    merged = load_records(tmp_path / "merged")
    assert sorted(r["case_id"] for r in merged) == sorted(r["case_id"] for r in load_records(plain_run))


def test_local_sweep_of_two_shards_ends_with_one_merged_run(plain_run: Path, tmp_path: Path) -> None:
    proc = lvm("sweep", "--executor", "local", "--shards", "2", "--out", str(tmp_path), "--run-id", "sw1",
               "--", "benches/", "-p", "no:cacheprovider", *SLICE)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert f"merged run folder: {tmp_path / 'sw1'}" in proc.stdout
    assert "shard 1/2: ok" in proc.stdout and "shard 2/2: ok" in proc.stdout
    assert only_run(tmp_path) == tmp_path / "sw1"
    assert sorted(r["case_id"] for r in load_records(tmp_path / "sw1")) == sorted(
        r["case_id"] for r in load_records(plain_run)
    )
    sources = json.loads((tmp_path / "sw1" / "sources.json").read_text())
    assert len(sources) == 2 and all(s["env"]["torch"] for s in sources)


def test_a_shard_with_a_failing_case_is_reported_with_its_log_and_everything_is_merged(tmp_path: Path) -> None:
    # smoke_vit cannot take 36 px (not a multiple of its patch 8): that case errors, in whichever shard has it.
    proc = lvm("sweep", "--executor", "local", "--shards", "2", "--out", str(tmp_path), "--run-id", "sw2", "--",
               "benches/", "--lvm-profile", "smoke", "--lvm-models", "smoke_resnet,smoke_vit", "--lvm-img-sizes",
               "36,32", "--lvm-batch-sizes", "1", "--lvm-device", "cpu", "-k", "forward")
    assert proc.returncode == 1, proc.stdout[-3000:] + proc.stderr[-3000:]
    (line,) = [ln for ln in proc.stdout.splitlines() if "finished, some benches failed" in ln]
    log = Path(line.split("; log: ")[1].split()[0])
    assert log.is_file()
    merged = {r["case_id"]: r["status"] for r in load_records(tmp_path / "sw2")}
    assert merged == {
        "latency[smoke_resnet-cpu-fp32-b1-36]": "ok", "latency[smoke_resnet-cpu-fp32-b1-32]": "ok",
        "latency[smoke_vit-cpu-fp32-b1-36]": "error", "latency[smoke_vit-cpu-fp32-b1-32]": "ok",
    }


def test_shards_that_cannot_run_are_reported_with_their_logs(tmp_path: Path) -> None:
    proc = lvm("sweep", "--executor", "local", "--shards", "2", "--out", str(tmp_path), "--run-id", "bad", "--",
               "benches/", "--no-such-option")
    assert proc.returncode == 1
    for k in (1, 2):
        head = f"shard {k}/2: failed (pytest exit code 4); log: "
        assert head in proc.stdout
        log = Path(proc.stdout.split(head)[1].split()[0])
        assert "--no-such-option" in log.read_text()
    assert "no shard wrote any record" in proc.stderr


def fake_config(workers: int, args: tuple[str, ...] = ()) -> Any:
    return SimpleNamespace(
        option=SimpleNamespace(dist="load", tx=["popen"] * workers),
        invocation_params=SimpleNamespace(args=args),
        pluginmanager=SimpleNamespace(hasplugin=lambda name: name == "xdist"),
        stash=pytest.Stash(),
    )


def test_each_xdist_worker_gets_its_own_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    # No GPU needed: the pinning is environment plumbing, checked here from controller to worker.
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")
    session = LvmSession.from_options(LvmConfig(devices=("cuda",)))
    config = fake_config(2)
    parallel.configure_controller(config, session)
    nodes = [SimpleNamespace(config=config, gateway=SimpleNamespace(id=f"gw{i}"), workerinput={"workerid": f"gw{i}"})
             for i in (1, 0)]
    for node in nodes:
        parallel.configure_node(node)
    assert {n.workerinput["workerid"]: n.workerinput[parallel.CUDA] for n in nodes} == {"gw0": "3", "gw1": "5"}
    assert all(n.workerinput[parallel.RUN_ID] == session.options.run_id for n in nodes)

    worker_session = LvmSession.from_options(LvmConfig(devices=("cuda",)))
    worker = SimpleNamespace(workerinput=nodes[0].workerinput, option=SimpleNamespace(),
                             addinivalue_line=lambda *a: None)
    facts = parallel.configure_worker(worker, worker_session)  # type: ignore[arg-type]
    assert os.environ["CUDA_VISIBLE_DEVICES"] == "5" and facts["cuda_visible_devices"] == "5"
    assert worker_session.options.run_id == session.options.run_id
    from lvmharness.runtime.machine import PINNED_FROM_ENV, _gpus_given

    assert os.environ[PINNED_FROM_ENV] == "3,5" and _gpus_given() == 2  # the fingerprint counts the run's GPUs
    monkeypatch.delenv(PINNED_FROM_ENV)
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "3,5")  # the controller's view again

    with pytest.raises(pytest.UsageError, match="needs one GPU per worker, and this run was given 2"):
        parallel.configure_controller(fake_config(3, ("--lvm-device", "cuda")),
                                      LvmSession.from_options(LvmConfig(devices=("cuda",))))
    with pytest.raises(pytest.UsageError, match="use --lvm-device cuda"):
        parallel.configure_controller(fake_config(2), LvmSession.from_options(LvmConfig(devices=("cuda:1",))))


@pytest.mark.parametrize(
    ("nodeid", "scope"),
    [
        ("benches/bench_latency.py::bench_forward_latency[vit-cpu-fp32-b8-224]", "lvm-model:vit"),
        ("benches/bench_flops.py::bench_macs[vit_base_patch16_224-meta-fp32-b1-224]",
         "lvm-model:vit_base_patch16_224"),
        ("benches/bench_latency.py::bench_forward_latency[smoke_vit-cuda0-bf16-b1-32]", "lvm-model:smoke_vit"),
        ("benches/bench_fidelity.py::bench_timer_fidelity[smoke_vit]", "benches/bench_fidelity.py::"
                                                                        "bench_timer_fidelity[smoke_vit]"),
        ("benches/x.py::bench_y[a-cpu-fp32]@mygroup", "mygroup"),
    ],
)
def test_cases_of_one_model_are_one_scheduling_unit(nodeid: str, scope: str) -> None:
    assert parallel.model_scope(nodeid, ("cpu", "cuda0", "meta")) == scope
