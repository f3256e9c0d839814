"""The scheduler's contract with a worker is the run directory's result.json: the driver ingests a result a
worker finished (its driver died before storing it) instead of training again, and never ingests another
cell's or an unreadable file."""
import json

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
