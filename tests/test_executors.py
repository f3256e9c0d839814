"""The cells of a run fanned out through submitit (its local executor, as on a Slurm node) and Ray (a local
cluster of 2 CPUs): the same rows as the local executor, a SIGKILLed worker retried from its checkpoint, a
killed driver restarted without storing anything twice.  Needs ``pip install -e ".[slurm,ray]"``; marked
``executors`` (CI's third pytest call, ``tox -e executors``)."""
import json
import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from protocols.api import run_protocol
from protocols.executors import ATTEMPTS_FILE, JOB_FILE, ExecutorOptions
from common.store import ResultsStore

pytestmark = pytest.mark.executors
ROOT = str(Path(__file__).resolve().parents[1])
GRID = dict(models=["vae", "gan"], budget="smoke", seeds=2, progress=False,
            overrides={"eval.n_samples": "60", "train.threads": "1"})
TIMED = {"samples_per_s", "speed_vs_gan"}          # wall-clock figures: never equal across processes


def _engine(name):
    pytest.importorskip(name, reason=f'pip install -e ".[{"slurm" if name == "submitit" else "ray"}]"')
    if name == "submitit":
        return ExecutorOptions("submitit", submitit_cluster="local", workers=2, poll_s=0.5)
    return ExecutorOptions("ray", ray_num_cpus=2, poll_s=0.5)


def _rows(path):
    rows = ResultsStore(path).measurements()
    keyed = {(r["model"], r["seed"], r["metric"], r["snapshot"]): r for r in rows}
    assert len(keyed) == len(rows), "a row is stored twice"
    return keyed


@pytest.fixture(scope="module")
def local_rows(tmp_path_factory):
    d = tmp_path_factory.mktemp("local")
    res = run_protocol("ablation", results=d / "r.sqlite", out=d / "runs", **GRID)
    assert {c.status for c in res.cells} == {"done"}
    return _rows(d / "r.sqlite")


@pytest.mark.parametrize("engine", ["submitit", "ray"])
def test_an_engine_stores_exactly_the_rows_of_the_local_executor(engine, local_rows, tmp_path):
    opts = _engine(engine)
    res = run_protocol("ablation", results=tmp_path / "r.sqlite", out=tmp_path / "runs", executor=opts, **GRID)
    assert sorted((c.model, c.seed, c.status) for c in res.cells) == sorted(
        (m, s, "done") for m in ("vae", "gan", "real") for s in (0, 1))
    rows = _rows(tmp_path / "r.sqlite")
    assert rows.keys() == local_rows.keys()
    for k, r in rows.items():
        ref = local_rows[k]
        assert (r["config_hash"], r["cell_key"], r["group_key"]) == (ref["config_hash"], ref["cell_key"],
                                                                     ref["group_key"]), k
        if k[2] not in TIMED:
            assert math.isclose(r["value"], ref["value"], rel_tol=1e-6, abs_tol=1e-9), (k, r["value"], ref["value"])
    assert {r["status"] for r in ResultsStore(tmp_path / "r.sqlite").runs()} == {"done"}
    again = run_protocol("ablation", results=tmp_path / "r.sqlite", out=tmp_path / "runs", executor=opts, **GRID)
    assert {c.status for c in again.cells} == {"skipped"} and len(_rows(tmp_path / "r.sqlite")) == len(rows)


def _kill_when_checkpointed(run_root: Path, model: str, box: dict, timeout=240) -> None:
    """SIGKILL the first worker of ``model``'s cell once it has written a checkpoint."""
    end = time.time() + timeout
    while time.time() < end:
        for attempts in run_root.glob(f"**/{model}/seed0-*/{ATTEMPTS_FILE}"):
            ck = attempts.parent / "last.pt"
            if ck.exists():
                pid = json.loads(attempts.read_text())[0]["pid"]
                os.kill(pid, signal.SIGKILL)
                box["killed"], box["dir"] = pid, attempts.parent
                return
        time.sleep(0.02)


@pytest.mark.parametrize("engine", ["submitit", "ray"])
def test_a_sigkilled_worker_is_retried_and_continues_from_its_checkpoint(engine, tmp_path):
    opts = _engine(engine)
    over = {"eval.n_samples": "60", "train.threads": "1", "train.steps": "600", "train.ckpt_every": "25"}
    box: dict = {}
    killer = threading.Thread(target=_kill_when_checkpointed, args=(tmp_path / "runs", "vae", box), daemon=True)
    killer.start()
    res = run_protocol("ablation", models=["vae"], budget="smoke", seeds=1, progress=False, overrides=over,
                       results=tmp_path / "r.sqlite", out=tmp_path / "runs", executor=opts)
    killer.join(5)
    if "killed" not in box:
        pytest.skip("the cell finished before its worker could be killed")
    assert {(c.model, c.status) for c in res.cells} == {("vae", "done"), ("real", "done")}
    attempts = json.loads((box["dir"] / ATTEMPTS_FILE).read_text())
    assert len(attempts) == 2 and attempts[0]["token"] == attempts[1]["token"]
    assert attempts[0]["pid"] == box["killed"] and attempts[1]["resume"] and not attempts[0]["resume"]
    log = Path(json.loads((box["dir"] / JOB_FILE).read_text())["log"]).read_text()
    assert "continued from the checkpoint at step" in log
    rows = _rows(tmp_path / "r.sqlite")                 # asserts no row twice
    assert len([k for k in rows if k[0] == "vae" and k[2] == "bpd" and k[3] == 0]) == 1
    assert [r["status"] for r in ResultsStore(tmp_path / "r.sqlite").runs() if r["model"] == "vae"] == ["done"]


def test_a_killed_driver_restarted_stores_nothing_twice_and_loses_nothing(tmp_path):
    _engine("submitit")
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "protocols.run", "--protocol", "ablation", "--budget", "smoke", "--model", "vae",
           "--seeds", "2", "--set", "eval.n_samples=60", "--set", "train.threads=1", "--set", "train.steps=300",
           "--set", "train.ckpt_every=25", "--results", str(tmp_path / "r.sqlite"), "--runs", str(tmp_path / "runs"),
           "--no-leaderboard", "--no-progress", "--executor", "submitit", "--submitit-cluster", "local",
           "--workers", "2"]
    driver = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    box: dict = {}
    end = time.time() + 240
    while time.time() < end and driver.poll() is None:     # kill the driver once a worker has a checkpoint
        if any(p.with_name("last.pt").exists() for p in (tmp_path / "runs").glob(f"**/vae/seed*-*/{ATTEMPTS_FILE}")):
            driver.send_signal(signal.SIGKILL)
            box["killed"] = True
            break
        time.sleep(0.02)
    driver.communicate(timeout=60)
    if "killed" not in box:
        pytest.skip("the run finished before its driver could be killed")
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    rows = _rows(tmp_path / "r.sqlite")                # asserts no row twice
    assert {(k[0], k[1]) for k in rows if k[2] == "fid" and k[3] == 0} == {("vae", 0), ("vae", 1), ("real", 0),
                                                                          ("real", 1)}
    assert {r["status"] for r in ResultsStore(tmp_path / "r.sqlite").runs()} == {"done"}
    assert ResultsStore(tmp_path / "r.sqlite").query("SELECT COUNT(*) AS n FROM cell_claims")[0]["n"] == 0
    third = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert third.returncode == 0 and third.stdout.count("already in the store, skipped") == 4
    assert len(_rows(tmp_path / "r.sqlite")) == len(rows)


def test_a_cell_of_two_processes_runs_as_a_torchrun_inside_its_task(tmp_path):
    """--gpus-per-cell 2 (here on the CPU, gloo): each cell is a 2-process torchrun in its worker, and its config
    hash is that of a 2-process run (world=2), as a torchrun of the driver would store it."""
    from protocols.api import plan
    opts = _engine("submitit")
    opts.gpus_per_cell = 2
    over = {"eval.n_samples": "60", "train.threads": "1", "train.device": "cpu"}
    res = run_protocol("ablation", models=["vae"], budget="smoke", seeds=1, progress=False, overrides=over,
                       results=tmp_path / "r.sqlite", out=tmp_path / "runs", executor=opts)
    assert {c.status for c in res.cells} == {"done"}
    (cfg,) = [c for c in plan("ablation", ["vae"], [0], budget="smoke", overrides=over, world=2)[0] if c.model == "vae"]
    assert res.configs["vae"] == cfg.hash() != plan("ablation", ["vae"], [0], budget="smoke", overrides=over)[0][0].hash()
    assert list((tmp_path / "runs").glob("digits/ablation/vae/seed0-*/task.pkl"))


def test_the_slurm_array_asks_for_what_the_options_say(tmp_path, monkeypatch):
    """On a Slurm node (a stand-in srun on PATH here): one array per round, the partition, the time limit, a
    GPU per cell, the array's parallelism, requeue on preemption; without srun a one-line error says what to do."""
    from protocols.config import ConfigError
    from protocols.executors import SubmititEngine
    _engine("submitit")
    opts = ExecutorOptions("submitit", submitit_cluster="slurm", slurm_partition="gpu", slurm_time_min=720, workers=8)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(ConfigError, match="pass --submitit-cluster local"):
        SubmititEngine(opts, tmp_path / "sub", cpus=8, gpus=1)
    (tmp_path / "srun").write_text("#!/bin/sh\nexit 0\n")
    (tmp_path / "srun").chmod(0o755)
    engine = SubmititEngine(opts, tmp_path / "sub", cpus=8, gpus=1)
    params = engine.executor._executor.parameters
    assert engine.cluster == "slurm" and engine.throttle is None          # Slurm throttles the array itself
    assert (params["partition"], params["time"], params["gpus_per_node"], params["cpus_per_task"],
            params["array_parallelism"], params["additional_parameters"]) == ("gpu", 720, 1, 8, 8, {"requeue": True})


# ---- requests that can never be met and addresses where nothing answers: one line, exit 2, within a minute, and
# the store as it was (no run left 'running') -- issue 35's Ray cases, with a local Ray ---------------------------
def _refused(tmp_path, capsys, *args):
    from protocols.run import main
    from test_bad_input import _seed_store, _snapshot
    _engine("ray")
    _seed_store(tmp_path / "r.sqlite")
    before, start = _snapshot(tmp_path / "r.sqlite"), time.monotonic()
    try:
        rc = main(["--budget", "smoke", "--seeds", "1", "--model", "vae", "--no-progress", "--no-leaderboard",
                   "--results", str(tmp_path / "r.sqlite"), "--runs", str(tmp_path / "runs"), "--executor", "ray",
                   *args])
    except SystemExit as e:
        rc = e.code
    out, err = capsys.readouterr()
    lines = [line for line in err.splitlines() if line.strip()]
    assert rc == 2 and len(lines) == 1 and lines[0].startswith("error:"), (out[-2000:], err[-2000:])
    assert time.monotonic() - start < 60 and _snapshot(tmp_path / "r.sqlite") == before
    return lines[0]


def test_a_dead_ray_address_is_refused_at_once(tmp_path, capsys):
    line = _refused(tmp_path, capsys, "--ray-address", "127.0.0.1:1")
    assert "--ray-address 127.0.0.1:1: nothing answers there" in line


def test_an_address_where_no_ray_answers_is_given_up_on_after_the_connect_timeout(tmp_path, capsys):
    import socket
    with socket.socket() as server:            # accepts connections and says nothing: not a Ray cluster
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        address = f"127.0.0.1:{server.getsockname()[1]}"
        line = _refused(tmp_path, capsys, "--ray-address", address, "--connect-timeout", "5")
    assert f"--ray-address {address}: no Ray cluster answered within 5 s" in line
    log = Path(line.rpartition("Ray's messages: ")[2])
    assert log.is_file() and log.parent == tmp_path / "runs" / "_executor" / "ray"


def test_a_gpu_that_no_node_has_is_refused(tmp_path, capsys):
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    line = _refused(tmp_path, capsys, "--gpus-per-cell", "1")
    assert "and 1 GPU(s) on one node, which the Ray this run would start on this machine cannot give" in line


def test_more_cpus_than_any_node_has_are_refused(tmp_path, capsys):
    if (os.cpu_count() or 1) >= 64:
        pytest.skip("this machine has 64 CPUs")
    line = _refused(tmp_path, capsys, "--cpus-per-cell", "64")
    assert "asks for 64 CPU(s) and 0 GPU(s) on one node" in line and "nodes: 1 x" in line


def test_a_running_ray_cluster_is_asked_what_its_nodes_have(tmp_path):
    """A cluster already connected (here a local Ray of 1 CPU): its live nodes are what a cell's request is
    checked against, after connecting and before anything is submitted."""
    from protocols.config import ConfigError
    from protocols.executors import RayEngine
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
    try:
        engine = RayEngine(ExecutorOptions("ray"), cpus=2, gpus=0, folder=tmp_path / "ray")
        with pytest.raises(ConfigError, match=r"2 CPU\(s\) and 0 GPU\(s\) on one node, .*\(nodes: 1 x 1 CPU/0 GPU\)"):
            engine.check(2, 0, "cpu")
        engine.check(1, 0, "cpu")
        assert "of 1 CPU(s)" in engine.waiting_for([])
    finally:
        ray.shutdown()


def test_a_sigkilled_ray_driver_leaves_no_ray_process_after_the_next_run(tmp_path):
    from protocols.executors import session_processes
    _engine("ray")
    env = {**os.environ, "PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "protocols.run", "--protocol", "ablation", "--budget", "smoke", "--model", "vae",
           "--seeds", "1", "--set", "eval.n_samples=60", "--set", "train.threads=1", "--set", "train.steps=300",
           "--results", str(tmp_path / "r.sqlite"), "--runs", str(tmp_path / "runs"), "--no-leaderboard",
           "--no-progress", "--executor", "ray"]
    driver = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    end = time.time() + 240
    while time.time() < end and driver.poll() is None:      # kill the driver once a worker has started
        if list((tmp_path / "runs").glob(f"**/vae/seed0-*/{ATTEMPTS_FILE}")):
            driver.send_signal(signal.SIGKILL)
            break
        time.sleep(0.05)
    driver.communicate(timeout=60)
    if driver.returncode != -signal.SIGKILL:
        pytest.skip("the run finished before its driver could be killed")
    # the Ray the driver started is named after it (session_<date>_<pid> under Ray's temp folder)
    (session,) = Path(os.environ.get("RAY_TMPDIR", "/tmp"), "ray").glob(f"session_*_{driver.pid}")
    session = str(session)
    again = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert again.returncode == 0, again.stdout[-3000:] + again.stderr[-2000:]
    assert "marked 2 run(s) left 'running' by a driver that stopped as 'interrupted'" in again.stdout
    assert session_processes(session) == [] and not list((tmp_path / "runs" / "_executor" / "ray").glob("driver-*"))
    assert {r["status"] for r in ResultsStore(tmp_path / "r.sqlite").runs()} == {"done"}


def test_a_slurm_partition_is_asked_for_its_limits_before_the_array_is_submitted(tmp_path, monkeypatch):
    """On a Slurm node (stand-in srun and sinfo on PATH): a --slurm-time over the partition's limit, or a cell no
    node of it can hold, is refused by the engine's check; a request that fits passes."""
    from protocols.config import ConfigError
    from protocols.executors import SubmititEngine
    _engine("submitit")
    for tool, body in (("srun", "exit 0"), ("sinfo", "echo 'gpu*|12:00:00|16|gpu:2'; echo 'cpu|infinite|64|(null)'")):
        (tmp_path / tool).write_text(f"#!/bin/sh\n{body}\n")
        (tmp_path / tool).chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    engine = SubmititEngine(ExecutorOptions("submitit", submitit_cluster="slurm", slurm_time_min=720), tmp_path / "s",
                            cpus=8, gpus=1)
    engine.check(8, 1, "cuda")
    with pytest.raises(ConfigError, match="16 CPU/2 GPU"):
        engine.check(8, 4, "cuda")
    long = SubmititEngine(ExecutorOptions("submitit", submitit_cluster="slurm", slurm_time_min=721), tmp_path / "s",
                          cpus=8, gpus=1)
    with pytest.raises(ConfigError, match=r"--slurm-time 721 \(minutes\) is longer than the time limit of partition "
                                          r"gpu \(12:00:00\)"):
        long.check(8, 1, "cuda")
