"""Where a protocol's cells run: in the driver's process (``local``), as a Slurm array through submitit
(``submitit``), or as Ray tasks (``ray``).  The engines are the libraries'; this module only adapts them.

The contract between a cell and the driver is a file, so that no worker ever opens the SQLite store (its WAL
does not work across hosts over NFS): wherever a cell runs, it writes its rows as ``result.json`` into its run
directory, atomically, and the driver (:mod:`protocols.scheduler`) ingests that file into the store.  In the
run directory a worker also keeps

- ``worker.lock``: held (``flock``) while a worker trains the cell.  A second worker of the same cell waits
  on it, then finds the first one's result; a restarted driver that finds it held re-attaches instead of
  submitting the cell again.
- ``attempts.json``: one entry per worker start.  A start whose submission token is already listed is a
  retry (the worker was killed, preempted or timed out), and it continues from the cell's last checkpoint.
- ``failed.json``: the error of a cell that raised.  An error inside a cell is not retried (it would raise
  again); a worker that died is, up to ``--retries`` times.

A cell asking for more than one GPU (``--gpus-per-cell N``) runs as ``torchrun --nproc-per-node N`` inside its
task, the data-parallel path of one machine (:mod:`protocols.distributed`).

Nothing waits for what can never come.  Before a cell is queued, the engine's cluster is asked whether one node
can give a cell what it asks for (:meth:`RayEngine.check`: the live nodes of the Ray cluster;
:meth:`SubmititEngine.check`: the partition's time limit and node shapes from ``sinfo``, or this machine for
submitit's local executor), and a request none can meet is refused in one line naming the request and what
exists.  Connecting is bounded (``--connect-timeout``): a Ray address is probed with a plain TCP connection, then
by a throw-away driver in a subprocess, before this process connects; Ray's own messages go to a log file.  A
local Ray this driver starts is recorded (``_executor/ray/driver-PID.json``); one whose driver was killed is
stopped by the next run (:func:`reap_orphans`).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import math
import os
import pickle
import re
import signal
import socket
import subprocess
import sys
import time
import traceback
import uuid
from collections import Counter
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional

from common.io import atomic_write

from .config import ConfigError, RunConfig
from common.store import Measurement

RESULT_FILE, FAILED_FILE, ATTEMPTS_FILE, JOB_FILE, LOCK_FILE = (
    "result.json", "failed.json", "attempts.json", "job.json", "worker.lock")
ENGINES = ("local", "submitit", "ray")
EXTRAS = {"submitit": "slurm", "ray": "ray"}


class WorkerLost(RuntimeError):
    """The worker of a cell stopped without a result or an error of the cell (killed, preempted, lost)."""


@dataclass
class ExecutorOptions:
    """How the cells of a run are executed (``python -m protocols.run --executor ...``)."""

    engine: str = "local"
    workers: Optional[int] = None          # cells in flight at once (Slurm: the array's parallelism)
    retries: int = 2                       # resubmissions of a cell whose worker died
    gpus_per_cell: Optional[float] = None  # None: 1 on CUDA, 0 on CPU; Ray takes fractions (0.5: two per GPU)
    cpus_per_cell: Optional[int] = None    # None: the cell's threads on CPU, this machine's CPUs // 4 on CUDA
    slurm_partition: Optional[str] = None
    slurm_time_min: int = 24 * 60
    slurm_requeue: bool = True
    submitit_cluster: Optional[str] = None  # None: Slurm where sbatch exists, else submitit's local executor
    ray_address: Optional[str] = None       # None: a Ray started for this run on this machine
    ray_num_cpus: Optional[int] = None      # CPUs of that local Ray (None: Ray counts them)
    poll_s: float = 2.0
    connect_timeout_s: float = 30.0         # the Ray cluster (or Slurm's sinfo) must answer within this
    stall_after_s: float = 300.0            # cells queued and none running this long: say what the queue waits for
    check_resources: bool = True            # refuse a request no node can meet (off: an autoscaler adds such nodes)

    def check(self) -> "ExecutorOptions":
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown executor {self.engine!r}; valid executors: {', '.join(ENGINES)}")
        for name in ("workers", "gpus_per_cell", "cpus_per_cell", "ray_num_cpus"):
            v = getattr(self, name)
            if v is not None and v < (0 if name == "gpus_per_cell" else 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be at least "
                                  f"{0 if name == 'gpus_per_cell' else 1}, not {v}")
        if self.gpus_per_cell is not None and not math.isfinite(self.gpus_per_cell):
            raise ConfigError(f"--gpus-per-cell must be a finite number, not {self.gpus_per_cell}")
        if self.retries < 0:
            raise ConfigError(f"--retries must be >= 0, not {self.retries}")
        if isinstance(self.slurm_time_min, bool) or not isinstance(self.slurm_time_min, int) or self.slurm_time_min < 1:
            raise ConfigError(f"--slurm-time must be a whole number of minutes >= 1, not {self.slurm_time_min}")
        for flag, v in (("--connect-timeout", self.connect_timeout_s), ("--stall-after", self.stall_after_s),
                        ("poll_s", self.poll_s)):
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ConfigError(f"{flag} must be a number of seconds > 0, not {v}")
        if self.engine == "local" and (self.gpus_per_cell is not None or self.cpus_per_cell is not None):
            raise ConfigError("--gpus-per-cell and --cpus-per-cell are options of --executor submitit or ray (the "
                              "local executor runs --workers cells at once on this machine, their threads split "
                              "between them; torchrun splits one cell over GPUs)")
        if self.engine != "ray" and (self.ray_address or self.ray_num_cpus):
            raise ConfigError("--ray-address is an option of --executor ray")
        if self.gpus_per_cell is not None and self.gpus_per_cell > 1 and self.gpus_per_cell != int(self.gpus_per_cell):
            raise ConfigError(f"--gpus-per-cell {self.gpus_per_cell}: above 1 a cell takes whole GPUs (torchrun)")
        if self.engine == "submitit" and self.gpus_per_cell is not None and \
                self.gpus_per_cell != int(self.gpus_per_cell):
            raise ConfigError(f"--gpus-per-cell {self.gpus_per_cell}: Slurm allocates whole GPUs (fractions are "
                              f"for --executor ray)")
        if self.engine != "submitit" and self.slurm_partition:
            raise ConfigError("--slurm-partition is an option of --executor submitit")
        return self


def import_engine(engine: str):
    """The engine's package, or a one-line error naming the extra that installs it."""
    try:
        return __import__(engine)
    except ImportError:
        raise ConfigError(f"--executor {engine} needs the {engine} package: pip install -e \".[{EXTRAS[engine]}]\" "
                          f"(or pip install {engine})") from None


# ---- the result file -------------------------------------------------------------------------------------
def write_result(run_dir: Path, cell_key: str, output, version: str) -> Path:
    """A finished cell's rows, atomically: a reader sees the whole file or none."""
    payload = {"cell_key": cell_key, "checkpoint": output.checkpoint, "code_version": version,
               "host": socket.gethostname(), "pid": os.getpid(),
               "measurements": [asdict(m) for m in output.measurements]}
    path = Path(run_dir) / RESULT_FILE
    atomic_write(path, json.dumps(payload, default=float))
    (Path(run_dir) / FAILED_FILE).unlink(missing_ok=True)
    return path


def read_result(run_dir: Path, cell_key: str):
    """The CellOutput a worker left in ``run_dir`` for ``cell_key``; None when there is none (or it is
    unreadable, or another configuration's: then it is renamed aside and the cell runs again)."""
    from .cells import CellOutput
    path = Path(run_dir) / RESULT_FILE
    if not path.is_file():
        return None
    try:
        d = json.loads(path.read_text())
        if d.get("cell_key") != cell_key:
            raise ValueError(f"it belongs to cell {d.get('cell_key')}, not {cell_key}")
        ms = [Measurement(**m) for m in d["measurements"]]
    except (ValueError, KeyError, TypeError) as e:
        aside = path.with_name(f"{RESULT_FILE}.unreadable-{time.time_ns()}")
        path.replace(aside)
        print(f"warning: {path} is not a result of this cell ({e}); moved to {aside.name}, the cell runs again",
              file=sys.stderr, flush=True)
        return None
    return CellOutput(ms, d.get("checkpoint", ""))


def read_failure(run_dir: Path) -> Optional[str]:
    path = Path(run_dir) / FAILED_FILE
    try:
        return json.loads(path.read_text()).get("error", "failed") if path.is_file() else None
    except ValueError:
        return "failed (unreadable failed.json)"


def clear_results(run_dir: Path) -> None:
    """``--fresh``: what earlier workers left is not reused (the checkpoint is set aside by the trainer)."""
    for name in (RESULT_FILE, FAILED_FILE, ATTEMPTS_FILE, JOB_FILE):
        (Path(run_dir) / name).unlink(missing_ok=True)


def worker_alive(run_dir: Path) -> bool:
    """Whether a worker holds the cell's lock now (one that was killed holds nothing: the OS dropped it)."""
    path = Path(run_dir) / LOCK_FILE
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)          # closing drops the lock if this process took it
    return False


# ---- the worker ---------------------------------------------------------------------------------------------
@dataclass
class CellTask:
    """What a worker needs to run one cell, picklable; ``cell_key`` is checked against what the worker sees."""

    protocol: str
    model: str
    seed: int
    cfg: RunConfig
    cell_key: str
    run_dir: str
    dataset: str
    data_root: Optional[str] = None
    download: bool = False
    out_dir: str = "runs"
    cache_dir: Optional[str] = None
    resume: bool = False
    progress: bool = False
    token: str = field(default_factory=lambda: uuid.uuid4().hex)
    gpus: float = 0
    log: Optional[str] = None            # a file the worker appends its output to (Ray; submitit has its own)
    env: Dict[str, str] = field(default_factory=dict)


def run_task(task: CellTask) -> Dict[str, Any]:
    """Run one cell in this process (the body of every remote worker); returns ``{"status": "done"}`` or
    ``{"status": "failed", "error": ...}``; a worker that dies returns nothing, and its engine says so."""
    os.environ.update(task.env)
    run_dir = Path(task.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    log = open(task.log, "a", buffering=1) if task.log else None
    try:
        with contextlib.ExitStack() as stack:
            if log is not None:
                stack.enter_context(contextlib.redirect_stdout(log))
                stack.enter_context(contextlib.redirect_stderr(log))
            fd = os.open(run_dir / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
            stack.callback(os.close, fd)
            fcntl.flock(fd, fcntl.LOCK_EX)          # a worker of this cell still alive: wait for it
            if read_result(run_dir, task.cell_key) is not None:
                return {"status": "done", "reused": True}
            resume = _record_attempt(run_dir, task) or task.resume    # every start recorded, --resume or not
            if task.gpus > 1 and int(os.environ.get("WORLD_SIZE", "1")) == 1:
                return _torchrun(task, resume)        # gpus > 1 is whole GPUs (ExecutorOptions.check)
            return _execute(task, resume)
    finally:
        if log is not None:
            log.close()


def _record_attempt(run_dir: Path, task: CellTask) -> bool:
    """Append this start to attempts.json; True when the same submission started before (a retry: resume)."""
    path = run_dir / ATTEMPTS_FILE
    try:
        attempts = json.loads(path.read_text()) if path.is_file() else []
    except ValueError:
        attempts = []
    retry = any(a.get("token") == task.token for a in attempts)
    attempts.append({"token": task.token, "attempt": len(attempts) + 1, "pid": os.getpid(),
                     "host": socket.gethostname(), "started": time.time(), "resume": retry or task.resume})
    atomic_write(path, json.dumps(attempts, indent=1))
    return retry


def _execute(task: CellTask, resume: bool) -> Dict[str, Any]:
    from . import distributed as D
    from . import tables  # noqa: F401  (registers the protocols)
    from .base import PROTOCOLS, Context
    from .datasets import load_dataset
    from .pipeline import Cell, extractor_identity
    from .scheduler import execute
    device = D.init_from_env(task.cfg.train.device)
    run_dir = Path(task.run_dir)
    try:
        ds = load_dataset(task.dataset, data_root=task.data_root, download=task.download)
        p = PROTOCOLS.get(task.protocol)
        ctx = Context(dataset=ds, budget=task.cfg.budget, store=None, out_dir=Path(task.out_dir), device=device,
                      resume=resume, cache_dir=Path(task.cache_dir) if task.cache_dir else None,
                      progress=task.progress)
        cell = Cell(p, task.model, task.seed, task.cfg, ds.name, ds.content_hash, extractor_identity(ctx, p, task.cfg))
        if cell.cell_key != task.cell_key:
            raise ConfigError(f"this worker ({socket.gethostname()}) sees another cell than the driver (data, "
                              f"extractor or configuration differ: {cell.cell_key} != {task.cell_key}); give the "
                              f"workers the driver's data and weights (a shared filesystem, the same $AVADE_* paths)")
        ctx.log(f"[worker {socket.gethostname()}:{os.getpid()}] {task.model} seed {task.seed}"
                f"{' (resuming from the last checkpoint)' if resume else ''}")
        execute(ctx, cell)
    except Exception as e:  # noqa: BLE001  the cell's own error: reported, not retried
        msg = f"{type(e).__name__}: {e}".splitlines()[0] if str(e) else type(e).__name__
        traceback.print_exc()
        if D.is_main():
            atomic_write(run_dir / FAILED_FILE, json.dumps({"error": msg, "traceback": traceback.format_exc()}))
        return {"status": "failed", "error": msg}
    return {"status": "done"}


def _torchrun(task: CellTask, resume: bool) -> Dict[str, Any]:
    """A multi-GPU cell: ``torchrun --standalone --nproc-per-node N`` of this module on the task's pickle."""
    path = Path(task.run_dir) / "task.pkl"
    atomic_write(path, pickle.dumps(replace(task, resume=resume, log=None)))
    cmd = torchrun_command(path, int(task.gpus))
    proc = subprocess.run(cmd, stdout=sys.stdout if task.log else None, stderr=subprocess.STDOUT if task.log
                          else None)
    if proc.returncode != 0:
        failure = read_failure(Path(task.run_dir))
        if failure:
            return {"status": "failed", "error": failure}
        raise WorkerLost(f"torchrun exited with {proc.returncode} without a result")
    failure = read_failure(Path(task.run_dir))
    return {"status": "failed", "error": failure} if failure else {"status": "done"}


def torchrun_command(task_pickle: Path, gpus: int) -> List[str]:
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={gpus}",
            "-m", "protocols.executors", str(task_pickle)]


# ---- engines -------------------------------------------------------------------------------------------
class Job:
    """One submitted cell: ``done()`` without blocking, then ``outcome()`` (raises WorkerLost)."""

    id = ""
    log = ""

    def done(self) -> bool:
        raise NotImplementedError

    def outcome(self) -> Dict[str, Any]:
        raise NotImplementedError


class AttachedJob(Job):
    """A worker still alive from an earlier driver (its lock is held): wait for it through its run directory."""

    def __init__(self, run_dir: Path, record: Dict[str, Any]):
        self.run_dir, self.id, self.log = run_dir, f"{record.get('job_id', '?')} (re-attached)", record.get("log", "")

    def done(self) -> bool:
        return not worker_alive(self.run_dir)

    def outcome(self) -> Dict[str, Any]:
        failure = read_failure(self.run_dir)
        if failure:
            return {"status": "failed", "error": failure}
        if (self.run_dir / RESULT_FILE).is_file():
            return {"status": "done"}
        raise WorkerLost("the re-attached worker stopped without a result")


class CellWorker:
    """submitit's callable: on preemption or time-out Slurm requeues it and it continues from its checkpoint
    (the same task token, so the worker counts it as a retry)."""

    def __call__(self, task: CellTask) -> Dict[str, Any]:
        return run_task(task)

    def checkpoint(self, task: CellTask):  # submitit's requeue hook
        import submitit
        return submitit.helpers.DelayedSubmission(CellWorker(), task)


class _SubmititJob(Job):
    def __init__(self, job):
        self.job, self.id = job, str(job.job_id)
        self.log = str(job.paths.stdout)

    def done(self) -> bool:
        return self.job.done()   # submitit's poll of the job (sacct on Slurm, the process locally)

    def outcome(self) -> Dict[str, Any]:
        import submitit
        try:
            return self.job.result()
        except (submitit.core.utils.UncompletedJobError, submitit.core.utils.FailedJobError) as e:
            raise WorkerLost(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None


class SubmititEngine:
    """One Slurm array per submission round (the cells not yet stored), through submitit's AutoExecutor."""

    name = "submitit"

    def __init__(self, opts: ExecutorOptions, folder: Path, cpus: int, gpus: float):
        submitit = import_engine("submitit")
        self.opts, self.folder = opts, Path(folder)
        try:
            self.executor = submitit.AutoExecutor(folder=str(self.folder / "%j"), cluster=opts.submitit_cluster)
        except RuntimeError as e:       # e.g. --submitit-cluster slurm where there is no srun
            raise ConfigError(f"--executor submitit: {e} (run the driver on a Slurm login node, or pass "
                              f"--submitit-cluster local)") from None
        params: Dict[str, Any] = {"timeout_min": opts.slurm_time_min, "cpus_per_task": cpus, "tasks_per_node": 1,
                                  "nodes": 1, "name": "avade-cell"}
        if gpus:
            params["gpus_per_node"] = int(gpus)
        if self.executor.cluster == "slurm":
            params["slurm_additional_parameters"] = {"requeue": True} if opts.slurm_requeue else {}
            if opts.slurm_partition:
                params["slurm_partition"] = opts.slurm_partition
            if opts.workers:
                params["slurm_array_parallelism"] = opts.workers
        self.executor.update_parameters(**params)
        self.cluster = self.executor.cluster
        # Slurm throttles the array itself; submitit's local executor starts every job at once, so the driver does
        self.throttle = None if self.cluster == "slurm" else (opts.workers or max(1, _cpus() // max(1, cpus)))

    def submit(self, tasks: List[CellTask]) -> List[Job]:
        jobs = self.executor.map_array(CellWorker(), tasks)
        return [_SubmititJob(j) for j in jobs]

    #: Slurm states of a job that will still run (or is running): a restarted driver waits for it
    ALIVE = ("PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "REQUEUED", "REQUEUE_HOLD", "RESIZING", "SUSPENDED")

    def reattach(self, record: Dict[str, Any]) -> Optional[Job]:
        """The Slurm job an earlier driver submitted for this cell, if Slurm will still run it (a pending array
        task has no worker lock yet, so the run directory alone cannot tell)."""
        if self.cluster != "slurm" or record.get("engine") != "submitit" or not record.get("job_id"):
            return None
        from submitit.slurm.slurm import SlurmJob
        job = SlurmJob(folder=str(self.folder / "%j"), job_id=str(record["job_id"]))
        return _SubmititJob(job) if job.state.split()[0] in self.ALIVE else None

    def check(self, cpus: int, gpus: float, device: str) -> None:
        """Refuse a request the partition (Slurm, asked through ``sinfo``) or this machine can never meet."""
        if not self.opts.check_resources:
            return
        if self.cluster != "slurm":
            return check_machine(cpus, gpus if device.startswith("cuda") else 0)
        parts = slurm_partitions(self.opts.connect_timeout_s)
        if parts is not None:           # None: no sinfo here (submitit talks to Slurm through sbatch alone)
            check_partition(parts, self.opts.slurm_partition, self.opts.slurm_time_min, cpus, gpus)

    def waiting_for(self, job_ids: List[str]) -> str:
        if self.cluster != "slurm":
            return "submitit's local executor to start them"
        try:
            out = _ask(["squeue", "--noheader", "--jobs", ",".join(job_ids), "--format=%T|%r"],
                       self.opts.connect_timeout_s)
        except ConfigError as e:
            return f"Slurm ({e})"
        states = Counter(tuple(line.split("|", 1)) for line in (out or "").splitlines() if "|" in line)
        return "Slurm: " + ("; ".join(f"{n} job(s) {state.lower()} (reason: {reason})"
                                      for (state, reason), n in states.items()) or "its queue to start them")

    def close(self) -> None:
        pass


class _RayJob(Job):
    def __init__(self, ref, log: str):
        self.ref, self.id, self.log = ref, ref.task_id().hex()[:12], log

    def done(self) -> bool:
        import ray
        ready, _ = ray.wait([self.ref], timeout=0)
        return bool(ready)

    def outcome(self) -> Dict[str, Any]:
        import ray
        try:
            return ray.get(self.ref)
        except (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError, ray.exceptions.TaskCancelledError,
                ray.exceptions.OutOfMemoryError, ray.exceptions.RayTaskError, ray.exceptions.RaySystemError) as e:
            raise WorkerLost(str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__) from None


def _ray_run_task(task: CellTask) -> Dict[str, Any]:
    return run_task(task)


class RayEngine:
    """One Ray task per cell with ``num_cpus`` = the cell's threads and ``num_gpus`` = its GPUs; Ray packs them.

    ``folder`` keeps ``ray.log`` (Ray's own messages) and the record of a local Ray this driver started."""

    name = "ray"

    def __init__(self, opts: ExecutorOptions, cpus: int, gpus: float, folder: Optional[Path] = None):
        ray = import_engine("ray")
        self.opts, self.cpus, self.gpus = opts, cpus, gpus
        self.folder = Path(folder) if folder is not None else Path("_executor") / "ray"
        self.folder.mkdir(parents=True, exist_ok=True)
        self.log, self.record = self.folder / "ray.log", None
        self.address = opts.ray_address or os.environ.get("RAY_ADDRESS") or None
        self.where = f"at {self.address}" if self.address else "started on this machine"
        self.started = not ray.is_initialized()
        if self.started and not self.address and opts.check_resources:
            self._check_here(cpus, gpus)       # the Ray it would start has this machine's CPUs and GPUs
        if self.started:
            self._init(ray)
        self.remote = ray.remote(_ray_run_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        self.throttle = opts.workers

    def _init(self, ray) -> None:
        kw: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
        _route_ray_logging(self.log)
        if self.address:
            probe_ray(self.address, self.opts.connect_timeout_s, self.log)
            kw["address"] = self.address
        elif self.opts.ray_num_cpus:
            kw["num_cpus"] = self.opts.ray_num_cpus
        try:
            with _stderr_to(self.log):
                ray.init(**kw)
        except Exception as e:  # noqa: BLE001  whatever Ray raises here is about the cluster, not about our code
            self.started = False
            with _stderr_to(self.log), contextlib.suppress(Exception):
                ray.shutdown()                # what it started before it failed
            raise ConfigError(f"--executor ray: no Ray cluster {self.where} ({_first_line(e)}); Ray's messages: "
                              f"{self.log}") from None
        finally:
            _route_ray_logging(self.log)      # ray.init may have added its own terminal handler
        if not self.address:
            self.record = _record_local_ray(self.folder)

    def _check_here(self, cpus: int, gpus: float) -> None:
        try:
            from ray._private.utils import get_num_cpus
            have = self.opts.ray_num_cpus or get_num_cpus()
        except ImportError:
            have = self.opts.ray_num_cpus or os.cpu_count() or 1
        n_gpus = 0
        if gpus:
            import torch
            n_gpus = torch.cuda.device_count()
        check_nodes([(have, n_gpus)], cpus, gpus, "the Ray this run would start on this machine",
                    "lower --cpus-per-cell (or train.threads) or --gpus-per-cell, or pass --ray-address of a cluster "
                    "with such a node")

    def check(self, cpus: int, gpus: float, device: str) -> None:
        """Refuse a request that no live node of the cluster can give (it would wait forever)."""
        if self.opts.check_resources:
            import ray
            nodes = [n.get("Resources", {}) for n in ray.nodes() if n.get("Alive")]
            check_nodes([(r.get("CPU", 0), r.get("GPU", 0)) for r in nodes], cpus, gpus,
                        f"the Ray cluster {self.where}", "lower --cpus-per-cell (or train.threads) or "
                        "--gpus-per-cell, or use a cluster with such a node (--no-resource-check when an autoscaler "
                        "adds one on demand)")

    def waiting_for(self, job_ids: List[str]) -> str:
        import ray
        free, total = ray.available_resources(), ray.cluster_resources()
        return (f"Ray, whose cluster has {free.get('CPU', 0):g} of {total.get('CPU', 0):g} CPU(s) and "
                f"{free.get('GPU', 0):g} of {total.get('GPU', 0):g} GPU(s) free (each cell needs {self.cpus} CPU(s) "
                f"and {self.gpus:g} GPU(s); other jobs may hold the rest)")

    def submit(self, tasks: List[CellTask]) -> List[Job]:
        return [_RayJob(self.remote.remote(t), t.log or "") for t in tasks]

    def reattach(self, record: Dict[str, Any]) -> Optional[Job]:
        return None      # a driver's tasks end with it; a live worker is found by its lock (AttachedJob)

    def close(self) -> None:
        """Disconnect, and stop the Ray this driver started (on error as on success)."""
        if self.started:
            import ray
            with _stderr_to(self.log):
                ray.shutdown()
            self.started = False
        if self.record is not None:
            self.record.unlink(missing_ok=True)


# ---- what the cluster can give: asked before anything is queued -------------------------------------------
def check_nodes(shapes: List[tuple], cpus: float, gpus: float, where: str, fix: str) -> None:
    """Refuse ``cpus`` CPUs and ``gpus`` GPUs on one node when no node shape ``(CPUs, GPUs)`` has both."""
    if any(c >= cpus and g >= gpus for c, g in shapes):
        return
    have = ", ".join(f"{n} x {c:g} CPU/{g:g} GPU" for (c, g), n in Counter(shapes).items()) or "no live node"
    raise ConfigError(f"each cell asks for {cpus:g} CPU(s) and {gpus:g} GPU(s) on one node, which {where} cannot "
                      f"give (nodes: {have}); {fix}")


def check_machine(cpus: int, gpus: float) -> None:
    """This machine (submitit's local executor): its CPUs, and its CUDA devices for GPU cells."""
    n_gpus = 0
    if gpus:
        import torch
        n_gpus = torch.cuda.device_count()
    check_nodes([(_cpus(), n_gpus)], cpus, gpus, "this machine", "lower --cpus-per-cell (or train.threads) or "
                "--gpus-per-cell")


def _bounded(cmd: List[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    """``subprocess.run`` whose time-out stops the command's whole process group (a shell's children too)."""
    proc = subprocess.Popen(cmd, start_new_session=True, text=True, **kw)
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _ask(cmd: List[str], timeout: float) -> Optional[str]:
    """The output of a cluster's command line tool; None where it is not installed."""
    try:
        proc = _bounded(cmd, timeout, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    except FileNotFoundError:
        return None
    except subprocess.TimeoutExpired:
        raise ConfigError(f"`{' '.join(cmd[:2])}` did not answer within {timeout:g} s (is the Slurm controller up? "
                          f"--connect-timeout S waits longer)") from None
    if proc.returncode != 0:
        raise ConfigError(f"`{' '.join(cmd)}` failed: {_first_line(proc.stderr) or f'exit code {proc.returncode}'}")
    return proc.stdout


def slurm_minutes(text: str) -> Optional[float]:
    """A Slurm time limit (``infinite``, ``M``, ``M:S``, ``H:M:S``, ``D-H``, ``D-H:M``, ``D-H:M:S``) in minutes;
    None when unlimited or unreadable."""
    days, dash, rest = text.strip().partition("-")
    if not dash:
        days, rest = "0", text.strip()
    try:
        f = [int(x) for x in rest.split(":")]
        n_days = int(days)
    except ValueError:
        return None
    if dash and len(f) <= 3:
        h, m, sec = (f + [0, 0])[:3]              # D-H, D-H:M, D-H:M:S
    elif not dash and len(f) <= 3:
        h, m, sec = [(0, f[0], 0), (0, *f), tuple(f)][len(f) - 1]     # M, M:S, H:M:S
    else:
        return None
    return n_days * 1440 + h * 60 + m + sec / 60


def gres_gpus(text: str) -> int:
    """GPUs per node of a ``sinfo`` GRES field: ``gpu:4``, ``gpu:a100:4(S:0-1)``, ``gpu:a:2,gpu:b:2``, ``(null)``."""
    n = 0
    for item in re.sub(r"\([^)]*\)", "", text).split(","):
        f = item.strip().split(":")
        if f[0] == "gpu":
            n += int(f[-1]) if len(f) > 1 and f[-1].isdigit() else 1
    return n


def slurm_partitions(timeout: float) -> Optional[Dict[str, dict]]:
    """{partition: {"default", "limit", "minutes", "nodes": [(CPUs, GPUs), ...]}} from ``sinfo``; None without it."""
    out = _ask(["sinfo", "--noheader", "--format=%P|%l|%c|%G"], timeout)
    if out is None:
        return None
    parts: Dict[str, dict] = {}
    for line in out.splitlines():
        f = line.strip().split("|")
        if len(f) != 4:
            continue
        name, limit, cpus, gres = f
        part = parts.setdefault(name.rstrip("*"), {"default": name.endswith("*"), "limit": limit,
                                                   "minutes": slurm_minutes(limit), "nodes": []})
        m = re.match(r"\d+", cpus)
        part["nodes"].append((int(m.group()) if m else 0, gres_gpus(gres)))
    return parts


def check_partition(parts: Dict[str, dict], partition: Optional[str], minutes: int, cpus: int, gpus: float) -> None:
    """The partition exists, its time limit allows ``--slurm-time``, and one of its nodes has the cell's CPUs and
    GPUs."""
    names = ", ".join(parts) or "none"
    name = partition or next((n for n, p in parts.items() if p["default"]), None)
    if name is None:
        raise ConfigError(f"Slurm has no default partition: pass --slurm-partition (partitions: {names})")
    if name not in parts:
        raise ConfigError(f"--slurm-partition {name}: Slurm has no such partition (partitions: {names})")
    p = parts[name]
    if p["minutes"] is not None and minutes > p["minutes"]:
        raise ConfigError(f"--slurm-time {minutes} (minutes) is longer than the time limit of partition {name} "
                          f"({p['limit']}); lower it (a cell that reaches it is requeued and continues from its "
                          f"checkpoint)")
    check_nodes(p["nodes"], cpus, gpus, f"Slurm partition {name}", "lower --cpus-per-cell (or train.threads) or "
                "--gpus-per-cell, or pass another --slurm-partition")


# ---- connecting to Ray, its messages, and the processes of a local Ray ------------------------------------
def probe_ray(address: str, timeout: float, log: Path) -> None:
    """Fail in one line within about ``timeout`` seconds when no Ray cluster answers at ``address`` (Ray itself
    retries a dead address for many minutes): a TCP connection first, then a throw-away driver in a subprocess."""
    hostport = re.sub(r"^\w+://", "", address)
    host, _, port = hostport.rpartition(":")
    if host and port.isdigit():
        try:
            socket.create_connection((host, int(port)), timeout=timeout).close()
        except OSError as e:
            raise ConfigError(f"--ray-address {address}: nothing answers there ({e.strerror or e}); start a cluster "
                              f"(ray start --head) or fix the address") from None
    code = f"import ray; ray.init(address={address!r}, log_to_driver=False); ray.shutdown()"
    with open(log, "a") as out:
        try:
            proc = _bounded([sys.executable, "-c", code], timeout, stdout=out, stderr=out)
        except subprocess.TimeoutExpired:
            raise ConfigError(f"--ray-address {address}: no Ray cluster answered within {timeout:g} s "
                              f"(--connect-timeout S waits longer); Ray's messages: {log}") from None
    if proc.returncode != 0:
        raise ConfigError(f"--ray-address {address}: cannot connect to a Ray cluster there; Ray's messages: {log}")


@contextlib.contextmanager
def _stderr_to(log: Path):
    """Ray's own messages (its C++ core and Python both write to file descriptor 2) into ``log`` meanwhile."""
    sys.stderr.flush()
    saved, fd = os.dup(2), os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    try:
        os.dup2(fd, 2)
        yield
    finally:
        with contextlib.suppress(Exception):
            sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(fd)


def _route_ray_logging(log: Path) -> None:
    """Ray's Python loggers write into ``log`` instead of the terminal."""
    logger = logging.getLogger("ray")
    for h in list(logger.handlers):
        if getattr(h, "avade_log", False) or type(h).__name__ in ("PlainRayHandler", "StreamHandler"):
            logger.removeHandler(h)
    handler = logging.FileHandler(log)
    handler.avade_log = True
    logger.addHandler(handler)


def _first_line(e: Any) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else type(e).__name__


def _stat(pid: int) -> List[str]:
    """The fields of ``/proc/PID/stat`` after the command name ([0] state, [19] start time); [] when gone."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return []


def _running(pid: int, start: Optional[str] = None) -> bool:
    """Whether process ``pid`` runs (a zombie does not), and is the one that started at ``start`` when given."""
    f = _stat(pid)
    return len(f) > 19 and f[0] != "Z" and (start is None or f[19] == start)


def _record_local_ray(folder: Path) -> Optional[Path]:
    """Write ``driver-PID.json`` naming the session of the local Ray this driver started (for :func:`reap_orphans`)."""
    try:
        from ray._private import worker as ray_worker
        session = ray_worker._global_node.get_session_dir_path()
    except (ImportError, AttributeError):
        return None
    path = folder / f"driver-{os.getpid()}.json"
    start = (_stat(os.getpid()) or [None] * 20)[19]
    atomic_write(path, json.dumps({"pid": os.getpid(), "start": start, "host": socket.gethostname(),
                                   "session_dir": session}))
    return path


def session_processes(session_dir: str) -> List[int]:
    """Live processes of a Ray session: its path on their command line or among their open files (Ray's agents
    rename themselves, ``ray::DashboardAgent``, but keep their logs open)."""
    if "session_" not in session_dir:
        return []
    pids = []
    for proc in Path("/proc").glob("[0-9]*"):
        if int(proc.name) == os.getpid():
            continue
        try:
            if not _running(int(proc.name)):
                continue
            if session_dir in proc.joinpath("cmdline").read_text(errors="replace") or any(
                    os.readlink(fd).startswith(session_dir) for fd in proc.joinpath("fd").iterdir()):
                pids.append(int(proc.name))
        except OSError:
            continue
    return pids


def _stop(pids: List[int], grace_s: float = 3.0) -> None:
    """SIGTERM, then SIGKILL what still runs after ``grace_s`` seconds (Ray's agents ignore SIGTERM)."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in pids:
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        end = time.monotonic() + grace_s
        while sig == signal.SIGTERM and time.monotonic() < end and any(map(_running, pids)):
            time.sleep(0.1)
        pids = [p for p in pids if _running(p)]


def reap_orphans(out_dir: Path) -> List[str]:
    """Stop the processes of each local Ray whose driver died without stopping it (SIGKILL): one note per driver."""
    notes: List[str] = []
    if not Path("/proc/self/stat").exists():       # not Linux: nothing to tell processes apart by
        return notes
    for path in (Path(out_dir) / "_executor" / "ray").glob("driver-*.json"):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if rec.get("host") != socket.gethostname() or _running(int(rec.get("pid", 0)), rec.get("start")):
            continue
        pids = session_processes(str(rec.get("session_dir", "")))
        _stop(pids)
        path.unlink(missing_ok=True)
        if pids:
            notes.append(f"stopped {len(pids)} process(es) of the local Ray of driver {rec.get('pid')}, which was "
                         f"killed before it could stop them")
    return notes


def _cpus() -> int:
    from .config import available_cpus
    return available_cpus()


# ---- the local engines: a process pool (--workers N), or a thread of the driver (a study's single worker) --------
def local_threads(opts: Optional[ExecutorOptions], overrides: List[Any]) -> List[Any]:
    """``overrides`` with ``train.threads`` = this machine's CPUs // N for ``--executor local --workers N`` (N > 1),
    unless they set it: the workers split the cores instead of each taking all of them (the thread count is part
    of a CPU cell's configuration, so such cells are their own configurations)."""
    from .config import Override, as_overrides
    overrides = as_overrides(overrides)
    if opts is None or opts.engine != "local" or (opts.workers or 1) <= 1 or \
            any(o.key == "train.threads" for o in overrides):
        return overrides
    return overrides + [Override.of("train.threads", max(1, _cpus() // opts.workers))]


class _FutureJob(Job):
    def __init__(self, future, n: int, log: str, where: str):
        self.future, self.id, self.log = future, f"{where}-{n}", log

    def done(self) -> bool:
        return self.future.done()

    def outcome(self) -> Dict[str, Any]:
        from concurrent.futures.process import BrokenProcessPool
        try:
            return self.future.result()
        except BrokenProcessPool as e:
            raise WorkerLost(f"a worker process of the local pool died ({_first_line(e)})") from None


class LocalPoolEngine:
    """``--executor local --workers N``: N worker processes of this machine (``concurrent.futures`` over a
    forkserver, whose workers start from a clean interpreter with torch imported once, never from a fork of a
    driver whose OpenMP threads are running).  A pool that broke (a worker killed) is replaced at the next
    submission; its cells are retried like those of any lost worker.  ``workers=1``, or for a tuning study without
    ``--workers``: one thread of the driver instead (the cell runs in this process, as the local executor's cells
    always did; the driver keeps polling meanwhile)."""

    name = "local"
    cluster = ""
    PRELOAD = ["torch", "protocols.api"]

    def __init__(self, opts: ExecutorOptions):
        self.workers = max(1, opts.workers or 1)
        self.throttle = self.workers
        self._pool, self._n, self._futures = None, 0, []

    def _submit(self, task: CellTask):
        if self.workers == 1:           # a daemon thread: it ends with the driver (Ctrl-C), as an in-process cell
            import concurrent.futures as cf
            import threading
            future: cf.Future = cf.Future()

            def body():
                try:
                    future.set_result(run_task(task))
                except BaseException as e:  # noqa: BLE001  the job's outcome reports it
                    future.set_exception(e)
            threading.Thread(target=body, name=f"avade-cell-{self._n}", daemon=True).start()
            return future
        if self._pool is None or getattr(self._pool, "_broken", False):
            import concurrent.futures as cf
            import multiprocessing as mp
            ctx = mp.get_context("forkserver")
            ctx.set_forkserver_preload(self.PRELOAD)
            self._pool = cf.ProcessPoolExecutor(self.workers, mp_context=ctx)
        return self._pool.submit(run_task, task)

    def submit(self, tasks: List[CellTask]) -> List[Job]:
        jobs = []
        for t in tasks:
            self._n += 1
            if self.workers == 1:
                t = replace(t, log=None)      # redirecting stdout in a thread would take the driver's with it
            self._futures.append(self._submit(t))
            jobs.append(_FutureJob(self._futures[-1], self._n, t.log or "",
                                   "thread" if self.workers == 1 else "process"))
        return jobs

    def reattach(self, record: Dict[str, Any]) -> Optional[Job]:
        return None      # a live worker of an earlier driver is found by its lock (AttachedJob)

    def check(self, cpus: int, gpus: float, device: str) -> None:
        pass

    def waiting_for(self, job_ids: List[str]) -> str:
        return f"a free worker of the local pool ({self.workers})"

    def close(self) -> None:
        """After a normal end nothing runs; on an error (Ctrl-C) the worker processes are stopped (a thread ends
        with the driver)."""
        running = any(not f.done() for f in self._futures)
        if self._pool is not None:
            procs = list((getattr(self._pool, "_processes", None) or {}).values())
            self._pool.shutdown(wait=not running, cancel_futures=True)
            for proc in procs if running else []:
                proc.terminate()
        self._pool, self._futures = None, []


def make_engine(opts: ExecutorOptions, out_dir: Path, cpus: int, gpus: float):
    if opts.engine == "local":
        return LocalPoolEngine(opts)
    if opts.engine == "submitit":
        return SubmititEngine(opts, Path(out_dir) / "_executor" / "submitit", cpus, gpus)
    if opts.engine == "ray":
        return RayEngine(opts, cpus, gpus, Path(out_dir) / "_executor" / "ray")
    raise ConfigError(f"no engine for executor {opts.engine!r}")


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m protocols.executors TASK.pkl``: one rank of a multi-GPU cell (started by :func:`_torchrun`)."""
    argv = sys.argv[1:] if argv is None else argv
    task = pickle.loads(Path(argv[0]).read_bytes())
    out = _execute(task, task.resume)
    return 0 if out["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
