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
"""
from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pickle
import socket
import subprocess
import sys
import time
import traceback
import uuid
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

    def check(self) -> "ExecutorOptions":
        if self.engine not in ENGINES:
            raise ConfigError(f"unknown executor {self.engine!r}; valid executors: {', '.join(ENGINES)}")
        for name in ("workers", "gpus_per_cell", "cpus_per_cell", "ray_num_cpus"):
            v = getattr(self, name)
            if v is not None and v < (0 if name == "gpus_per_cell" else 1):
                raise ConfigError(f"--{name.replace('_', '-')} must be at least "
                                  f"{0 if name == 'gpus_per_cell' else 1}, not {v}")
        if self.retries < 0:
            raise ConfigError(f"--retries must be >= 0, not {self.retries}")
        if self.engine == "local" and (self.workers is not None or self.gpus_per_cell is not None
                                       or self.cpus_per_cell is not None):
            raise ConfigError("--workers, --gpus-per-cell and --cpus-per-cell are options of --executor submitit "
                              "or ray (the local executor runs one cell at a time; torchrun splits one cell over "
                              "GPUs)")
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
            resume = task.resume or _record_attempt(run_dir, task)
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
        self.folder = Path(folder)
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
    """One Ray task per cell with ``num_cpus`` = the cell's threads and ``num_gpus`` = its GPUs; Ray packs them."""

    name = "ray"

    def __init__(self, opts: ExecutorOptions, cpus: int, gpus: float):
        ray = import_engine("ray")
        self.started = not ray.is_initialized()
        if self.started:
            kw: Dict[str, Any] = {"include_dashboard": False, "log_to_driver": False}
            if opts.ray_address:
                kw["address"] = opts.ray_address
            elif opts.ray_num_cpus:
                kw["num_cpus"] = opts.ray_num_cpus
            ray.init(**kw)
        self.remote = ray.remote(_ray_run_task).options(num_cpus=cpus, num_gpus=gpus, max_retries=0)
        self.throttle = opts.workers

    def submit(self, tasks: List[CellTask]) -> List[Job]:
        return [_RayJob(self.remote.remote(t), t.log or "") for t in tasks]

    def reattach(self, record: Dict[str, Any]) -> Optional[Job]:
        return None      # a driver's tasks end with it; a live worker is found by its lock (AttachedJob)

    def close(self) -> None:
        if self.started:
            import ray
            ray.shutdown()


def _cpus() -> int:
    from .config import available_cpus
    return available_cpus()


def make_engine(opts: ExecutorOptions, out_dir: Path, cpus: int, gpus: float):
    if opts.engine == "submitit":
        return SubmititEngine(opts, Path(out_dir) / "_executor" / "submitit", cpus, gpus)
    if opts.engine == "ray":
        return RayEngine(opts, cpus, gpus)
    raise ConfigError(f"no engine for executor {opts.engine!r}")


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m protocols.executors TASK.pkl``: one rank of a multi-GPU cell (started by :func:`_torchrun`)."""
    argv = sys.argv[1:] if argv is None else argv
    task = pickle.loads(Path(argv[0]).read_bytes())
    out = _execute(task, task.resume)
    return 0 if out["status"] == "done" else 1


if __name__ == "__main__":
    sys.exit(main())
