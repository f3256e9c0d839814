"""The scheduler's contract with a worker is the run directory's result.json: the driver ingests a result a
worker finished (its driver died before storing it) instead of training again, and never ingests another
cell's or an unreadable file."""
import json
import re

from protocols.api import run_protocol
from protocols.executors import RESULT_FILE, read_result
from common.store import ResultsStore

KW = dict(models=["vae"], budget="smoke", seeds=1, progress=False, overrides={"eval.n_samples": "60"})


def test_a_finished_result_file_is_stored_without_training_again(tmp_path, capsys):
    first = run_protocol("ablation", results=tmp_path / "a.sqlite", out=tmp_path / "runs", **KW)
    assert {c.status for c in first.cells} == {"done"}
    capsys.readouterr()
    # the store of that run is lost (the driver died between the worker's result and its commit)
    second = run_protocol("ablation", results=tmp_path / "b.sqlite", out=tmp_path / "runs", **KW)
    out = capsys.readouterr().out
    assert {c.status for c in second.cells} == {"done"}
    assert "training and evaluating" not in out and out.count("stored now") == 2
    a, b = (ResultsStore(tmp_path / f"{n}.sqlite").measurements() for n in "ab")
    key = lambda r: (r["model"], r["metric"], r["snapshot"], r["cell_key"], r["value"])  # noqa: E731
    assert sorted(map(key, a)) == sorted(map(key, b))
    assert {r["status"] for r in ResultsStore(tmp_path / "b.sqlite").runs()} == {"done"}


def test_a_result_file_of_another_cell_or_unreadable_is_set_aside(tmp_path, capsys):
    (tmp_path / RESULT_FILE).write_text(json.dumps({"cell_key": "other", "measurements": []}))
    assert read_result(tmp_path, "mine") is None
    assert not (tmp_path / RESULT_FILE).exists() and len(list(tmp_path.glob(f"{RESULT_FILE}.unreadable-*"))) == 1
    (tmp_path / RESULT_FILE).write_text("{not json")
    assert read_result(tmp_path, "mine") is None and "the cell runs again" in capsys.readouterr().err


class _FakeJob:
    def __init__(self, task, jid):
        from protocols.executors import run_task
        self.id, self.log, self._out = jid, "", run_task(task)     # runs the cell here, at once

    def done(self):
        return True

    def outcome(self):
        return self._out


class _FakeEngine:
    """An engine that runs each task in this process: the driver's remote loop without submitit or Ray."""
    throttle = None

    def __init__(self):
        self.submitted, self.reattached = [], []

    def submit(self, tasks):
        self.submitted += [(t.model, t.seed) for t in tasks]
        return [_FakeJob(t, f"job-{t.model}-{t.seed}") for t in tasks]

    def reattach(self, record):
        if record.get("job_id") != "earlier-1":
            return None
        self.reattached.append(record["job_id"])
        return _FakeJob(self.task_of[record["token"]], "earlier-1")

    def close(self):
        pass


def test_the_remote_loop_reattaches_to_a_job_of_an_earlier_driver_instead_of_submitting_again(tmp_path, monkeypatch):
    """A restarted driver finds job.json of a job its engine will still run (a pending Slurm array task): it waits
    for that job instead of submitting the cell again, stores its rows once, and submits only the other cells."""
    from protocols import executors as X
    from protocols.api import plan
    engine = _FakeEngine()
    monkeypatch.setattr(X, "make_engine", lambda *a, **k: engine)
    engine.task_of = {}                   # the earlier driver's submission of vae seed 0, pending in the queue
    (cfg,) = [c for c in plan("ablation", ["vae"], [0], budget="smoke", overrides=KW["overrides"])[0]
              if c.model == "vae"]
    run_dir = tmp_path / "runs" / "digits" / "ablation" / "vae" / f"seed0-{cfg.hash()}"
    run_dir.mkdir(parents=True)
    (run_dir / X.JOB_FILE).write_text(json.dumps({"engine": "ray", "job_id": "earlier-1", "token": "tok-1"}))
    orig_task = X.CellTask.__init__

    def capture(self, *a, **k):
        orig_task(self, *a, **k)
        if self.model == "vae":
            engine.task_of["tok-1"] = self
    monkeypatch.setattr(X.CellTask, "__init__", capture)
    res = run_protocol("ablation", results=tmp_path / "r.sqlite", out=tmp_path / "runs",
                       executor=X.ExecutorOptions("ray", poll_s=0.01), **KW)
    assert {(c.model, c.status) for c in res.cells} == {("vae", "done"), ("real", "done")}
    assert engine.reattached == ["earlier-1"] and engine.submitted == [("real", 0)]
    rows = ResultsStore(tmp_path / "r.sqlite").measurements(model="vae")
    assert len({(r["metric"], r["snapshot"]) for r in rows}) == len(rows) and any(r["metric"] == "bpd" for r in rows)


def test_a_restarted_driver_waits_for_a_live_worker_of_an_earlier_driver(tmp_path, monkeypatch):
    """A worker of an earlier driver still holds its cell's lock: the new driver submits nothing for that cell,
    waits for the lock to drop, then stores the worker's result once."""
    import fcntl
    import os
    import threading

    from protocols import executors as X
    run_protocol("ablation", results=tmp_path / "a.sqlite", out=tmp_path / "runs", **KW)   # leaves result.json
    (run_dir,) = (tmp_path / "runs").glob("digits/ablation/vae/seed0-*")
    (run_dir / X.RESULT_FILE).rename(run_dir / "finished-later.json")
    (run_dir / X.JOB_FILE).write_text(json.dumps({"engine": "ray", "job_id": "earlier-2", "token": "tok-2"}))
    fd = os.open(run_dir / X.LOCK_FILE, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)                        # the earlier driver's worker, still training

    def worker_finishes():
        (run_dir / "finished-later.json").rename(run_dir / X.RESULT_FILE)
        os.close(fd)
    threading.Timer(1.0, worker_finishes).start()
    engine = _FakeEngine()
    monkeypatch.setattr(X, "make_engine", lambda *a, **k: engine)
    res = run_protocol("ablation", results=tmp_path / "b.sqlite", out=tmp_path / "runs",
                       executor=X.ExecutorOptions("ray", poll_s=0.05), **KW)
    assert {(c.model, c.status) for c in res.cells} == {("vae", "done"), ("real", "done")}
    assert engine.submitted == [] and engine.reattached == []      # the floor's result was ingested, vae waited for
    a, b = (ResultsStore(tmp_path / f"{n}.sqlite").measurements(model="vae") for n in "ab")
    assert sorted((r["metric"], r["snapshot"], r["value"]) for r in a) == \
        sorted((r["metric"], r["snapshot"], r["value"]) for r in b)


def test_cpus_per_cell_is_what_the_engine_reserves_and_never_fewer_than_the_cells_threads(tmp_path, monkeypatch):
    import pytest

    from protocols import executors as X
    from protocols.config import ConfigError
    asked = []

    def make(opts, out_dir, cpus, gpus):
        asked.append((cpus, gpus))
        return _FakeEngine()
    monkeypatch.setattr(X, "make_engine", make)
    kw = {**KW, "overrides": {**KW["overrides"], "train.threads": "2"}}
    run_protocol("ablation", results=tmp_path / "r.sqlite", out=tmp_path / "runs",
                 executor=X.ExecutorOptions("ray", poll_s=0.01), **kw)
    run_protocol("ablation", results=tmp_path / "s.sqlite", out=tmp_path / "runs2",
                 executor=X.ExecutorOptions("ray", poll_s=0.01, cpus_per_cell=3), **kw)
    assert asked == [(2, 0), (3, 0)]             # default: the cells' train.threads; then the flag
    with pytest.raises(ConfigError, match="fewer than the 2 threads"):
        run_protocol("ablation", results=tmp_path / "t.sqlite", out=tmp_path / "runs3",
                     executor=X.ExecutorOptions("ray", poll_s=0.01, cpus_per_cell=1), **kw)
    assert not ResultsStore(tmp_path / "t.sqlite").measurements()


class _QueuedJob:
    """A job its engine has not started yet; once the driver asked what it waits for, it ends (as a cell that
    raised: nothing is trained)."""

    def __init__(self, engine, task):
        self.engine, self.id, self.log = engine, f"job-{task.model}", ""

    def done(self):
        return bool(self.engine.asked)

    def outcome(self):
        return {"status": "failed", "error": "ended by the test"}


class _StuckEngine(_FakeEngine):
    def __init__(self, refuse=None):
        super().__init__()
        self.asked, self.refuse, self.closed = 0, refuse, False

    def check(self, cpus, gpus, device):
        if self.refuse:
            from protocols.config import ConfigError
            raise ConfigError(self.refuse)

    def submit(self, tasks):
        self.submitted += [(t.model, t.seed) for t in tasks]
        return [_QueuedJob(self, t) for t in tasks]

    def waiting_for(self, job_ids):
        self.asked += 1
        return f"the test's queue ({len(job_ids)} job(s) pending)"

    def close(self):
        self.closed = True


def test_a_queue_that_makes_no_progress_says_what_it_waits_for(tmp_path, monkeypatch, capsys):
    from protocols import executors as X
    engine = _StuckEngine()
    monkeypatch.setattr(X, "make_engine", lambda *a, **k: engine)
    res = run_protocol("ablation", results=tmp_path / "r.sqlite", out=tmp_path / "runs",
                       executor=X.ExecutorOptions("ray", poll_s=0.02, stall_after_s=0.3), **KW)
    assert {c.status for c in res.cells} == {"failed"} and engine.asked == 1 and engine.closed
    out = capsys.readouterr().out
    assert "[ablation] no cell has started for 0 s (2 queued): waiting for the test's queue (2 job(s) pending)" in out


def test_a_request_the_cluster_cannot_meet_is_refused_before_any_run_is_marked(tmp_path, monkeypatch):
    """The engine's check refuses: nothing submitted, no run marked 'running', no claim left, the engine closed."""
    import pytest

    from protocols import executors as X
    from protocols.config import ConfigError
    engine = _StuckEngine(refuse="each cell asks for 64 CPU(s) and 0 GPU(s) on one node, which ... cannot give")
    monkeypatch.setattr(X, "make_engine", lambda *a, **k: engine)
    with pytest.raises(ConfigError, match="64 CPU"):
        run_protocol("ablation", results=tmp_path / "r.sqlite", out=tmp_path / "runs",
                     executor=X.ExecutorOptions("ray", poll_s=0.02), **KW)
    store = ResultsStore(tmp_path / "r.sqlite")
    assert engine.submitted == [] and engine.closed and store.runs() == []
    assert store.query("SELECT * FROM cell_claims") == []


# ---- what a cluster can give, asked before anything is queued (the engines' checks, without the engines) ------
SINFO = ("gpu*|1-00:00:00|64|gpu:a100:2(S:0-1)\ngpu*|1-00:00:00|32|gpu:v100:4\ncpu|2:00:00|128|(null)\n"
         "long|infinite|8|(null)\n")


def test_slurm_limits_are_read_from_sinfo_and_a_request_they_cannot_meet_is_refused(monkeypatch):
    import pytest

    from protocols.config import ConfigError
    from protocols.executors import check_partition, gres_gpus, slurm_minutes, slurm_partitions
    assert [slurm_minutes(t) for t in ("infinite", "30", "30:00", "2:00:00", "1-00:00:00", "2-12", "n/a")] == \
        [None, 30, 30, 120, 1440, 3600, None]
    assert [gres_gpus(t) for t in ("(null)", "gpu:4", "gpu:a100:4(S:0-1)", "gpu:a:2,gpu:b:2", "gpu:a:2,mps:100")] == \
        [0, 4, 4, 4, 2]
    import protocols.executors as X
    monkeypatch.setattr(X, "_ask", lambda cmd, timeout: SINFO)
    parts = slurm_partitions(5)
    assert parts["gpu"]["default"] and parts["gpu"]["nodes"] == [(64, 2), (32, 4)] and parts["long"]["minutes"] is None
    check_partition(parts, None, 1440, 16, 4)                      # the default partition, a node with 4 GPUs
    check_partition(parts, "long", 100_000, 8, 0)                  # no time limit
    for args, needle in [(("nosuch", 60, 1, 0), "no such partition (partitions: gpu, cpu, long)"),
                         (("cpu", 180, 1, 0), "--slurm-time 180 (minutes) is longer than the time limit of "
                                              "partition cpu (2:00:00)"),
                         (("gpu", 60, 48, 4), "48 CPU(s) and 4 GPU(s) on one node, which Slurm partition gpu "
                                              "cannot give (nodes: 1 x 64 CPU/2 GPU, 1 x 32 CPU/4 GPU)"),
                         (("cpu", 60, 2, 1), "2 CPU(s) and 1 GPU(s) on one node")]:
        with pytest.raises(ConfigError, match=re.escape(needle)):
            check_partition(parts, *args)
    no_default = {k: {**v, "default": False} for k, v in parts.items()}
    with pytest.raises(ConfigError, match="no default partition: pass --slurm-partition"):
        check_partition(no_default, None, 60, 1, 0)


def test_a_slurm_that_does_not_answer_is_given_up_on_after_the_connect_timeout(tmp_path, monkeypatch):
    import time

    import pytest

    from protocols.config import ConfigError
    from protocols.executors import slurm_partitions
    (tmp_path / "sinfo").write_text("#!/bin/sh\nsleep 30\necho late\n")          # its child holds the pipe too
    (tmp_path / "sinfo").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{__import__('os').environ['PATH']}")
    t = time.monotonic()
    with pytest.raises(ConfigError, match=r"`sinfo --noheader` did not answer within 1 s .*--connect-timeout"):
        slurm_partitions(1.0)
    assert time.monotonic() - t < 10
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    assert slurm_partitions(1.0) is None           # no sinfo: nothing to ask (submitit talks to sbatch alone)


def test_this_machine_refuses_more_cpus_or_gpus_than_it_has():
    import pytest

    from protocols.config import ConfigError, available_cpus
    from protocols.executors import check_machine
    check_machine(1, 0)
    with pytest.raises(ConfigError, match=f"which this machine cannot give \\(nodes: 1 x {available_cpus()} CPU"):
        check_machine(available_cpus() + 1, 0)
    import torch
    with pytest.raises(ConfigError, match="GPU"):
        check_machine(1, torch.cuda.device_count() + 1)


def test_the_processes_of_a_local_ray_whose_driver_was_killed_are_stopped_by_the_next_run(tmp_path):
    """A driver-PID.json whose driver is gone: every process of its session (the session folder on its command line,
    or a file of it open, as Ray's renamed agents keep) is stopped; a live driver's session is left alone."""
    import json
    import os
    import socket
    import subprocess
    import sys

    from protocols.executors import _running, reap_orphans, session_processes
    folder = tmp_path / "runs" / "_executor" / "ray"
    folder.mkdir(parents=True)
    sessions = {name: tmp_path / f"session_{name}" for name in ("dead", "live")}
    procs = {}
    for name, session in sessions.items():
        session.mkdir()
        agent = ("import sys, time; f = open(sys.argv[1] + '/logs.txt', 'w'); sys.argv[1:] = []; time.sleep(60)")
        procs[name] = [subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)", str(session)]),
                       subprocess.Popen([sys.executable, "-c", agent, str(session)])]
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    for name, pid in (("dead", gone.pid), ("live", os.getpid())):
        (folder / f"driver-{pid}.json").write_text(json.dumps({"pid": pid, "start": None, "host": socket.gethostname(),
                                                               "session_dir": str(sessions[name])}))
    try:
        import time
        end = time.monotonic() + 10
        while len(session_processes(str(sessions["dead"]))) < 2 and time.monotonic() < end:
            time.sleep(0.05)                        # the agent has opened its file
        notes = reap_orphans(tmp_path / "runs")
        assert notes == [f"stopped 2 process(es) of the local Ray of driver {gone.pid}, which was killed before it "
                         f"could stop them"]
        for p in procs["dead"]:
            p.wait(5)
        assert all(_running(p.pid) for p in procs["live"])
        assert sorted(f.name for f in folder.iterdir()) == [f"driver-{os.getpid()}.json"]
    finally:
        for p in procs["dead"] + procs["live"]:
            p.kill()
            p.wait()
