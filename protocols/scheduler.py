"""The cell scheduler: each cell of a run once, wherever it executes (:mod:`protocols.executors`).

For every cell, in order: skip it when exactly its identity is stored (``fresh=True`` retrains it); claim it
in the store so no other driver handles it; ingest a result an earlier worker left in its run directory (a
driver stopped after the worker finished); otherwise run it, here (``local``) or as a task of an engine, and
commit its rows together with the run's 'done' mark.  The driver is the only process that writes the store;
a remote worker writes ``result.json`` and the driver ingests it.  Cells another driver is training are
waited for at the end (and skipped if it stored them).

What a killed driver left is tidied first (:func:`tidy`): its runs still marked 'running' become 'interrupted',
the claims of dead processes are removed, the processes of a local Ray it started are stopped.  A remote run asks
its engine whether the cluster can give each cell what it asks for before a run is marked or a cell queued, and
says what the queue waits for when cells stay queued with none running for ``--stall-after`` seconds.
"""
from __future__ import annotations

import contextlib
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional

from . import distributed as D
from . import executors as X
from .base import Context, Protocol
from .cells import CellOutput, floor_cell
from .claims import FLOOR
from .config import ConfigError
from .pipeline import Cell


@dataclass
class CellOutcome:
    model: str
    seed: int
    status: str                  # done | skipped (already stored) | failed
    values: Dict[str, float] = field(default_factory=dict)
    error: str = ""


def expected_metrics(p: Protocol, model: str, extractor: str = "") -> tuple:
    """The metric keys that complete a cell (the floor row has no likelihood and no sampling cost; the
    self-supervised extractor of unlabelled data has no logits, hence no IS)."""
    from metrics import keys as K
    model_only = (K.BPD, K.BPD_CONTENT, K.BPD_IW, K.SAMPLES_PER_S, K.SPEED_VS_GAN, K.NFE)
    no_logits = (K.IS, K.IS_STD) if extractor == "selfsup" else ()
    return tuple(m for m in p.metrics if not (model == FLOOR and m in model_only) and m not in no_logits)


def execute(ctx: Context, cell: Cell) -> CellOutput:
    """Train and evaluate one cell in this process; rank 0 leaves its rows in the run directory's result file."""
    output = (floor_cell if cell.model == FLOOR else cell.protocol.cell)(ctx, cell)
    if D.is_main():
        X.write_result(cell.run_dir(ctx.out_dir), cell.cell_key, output, ctx.version)
    return output


def run_cells(p: Protocol, ctx: Context, cells: List[Cell], *, fresh: bool, debug: bool,
              executor: Optional[X.ExecutorOptions] = None, task_args: Optional[Dict[str, Any]] = None,
              feed: Optional["Feed"] = None) -> List[CellOutcome]:
    """Run ``cells`` (and those ``feed`` gives while they run): here, one after another, or through an engine
    (submitit, Ray, or the local pool of ``--workers N``); a feed always runs through an engine (the local one: a
    thread of this process without --workers), so that the driver can poll it while cells train."""
    tidy(ctx)
    pooled = executor is not None and executor.engine == "local" and (executor.workers or 1) > 1
    if feed is not None or pooled or (executor is not None and executor.engine != "local"):
        return _Remote(p, ctx, cells, executor or X.ExecutorOptions(), task_args or {}, fresh=fresh, feed=feed).run()
    outcomes: Dict[int, CellOutcome] = {}
    deferred = []
    for i, cell in enumerate(cells):
        outcome = _try_cell(p, ctx, cell, fresh=fresh, debug=debug, wait=False)
        if outcome is None:
            deferred.append(i)
        else:
            outcomes[i] = outcome
    for i in deferred:
        outcomes[i] = _try_cell(p, ctx, cells[i], fresh=False, debug=debug, wait=True)
    return [outcomes[i] for i in range(len(cells))]


def tidy(ctx: Context) -> None:
    """Mark what a driver that was killed left behind (rank 0; see the module docstring)."""
    if not D.is_main() or ctx.store is None:
        return
    done = ctx.store.mark_interrupted()
    if done["runs"] or done["claims"]:
        ctx.log(f"marked {done['runs']} run(s) left 'running' by a driver that stopped as 'interrupted' and removed "
                f"{done['claims']} claim(s) of processes that are gone (rerun their command to continue them)")
    for note in X.reap_orphans(ctx.out_dir):
        ctx.log(note)


def _tag(p: Protocol, cell: Cell) -> str:
    return f"[{p.name}] {cell.model} seed {cell.seed}"


def _claim(p: Protocol, ctx: Context, cell: Cell, *, fresh: bool, wait: bool):
    """(claim, decision) with decision 'train', 'stored' or 'busy' (rank 0 only; others get (None, 'train'))."""
    tag = _tag(p, cell)
    if not D.is_main():
        return None, "train"
    want = expected_metrics(p, cell.model, cell.extractor.get("extractor", ""))
    if not fresh and ctx.store.has_cell(cell.cell_key, want):
        return None, "stored"
    claim = ctx.store.claim_cell(cell.cell_key, cell.run_id, wait=False)
    if claim is None and not wait:
        holder = ctx.store.claim_holder(cell.cell_key) or {}
        ctx.log(f"{tag}: being trained by process {holder.get('pid', '?')} on {holder.get('host', '?')}; "
                f"coming back to it after the other cells")
        return None, "busy"
    if claim is None:
        holder = ctx.store.claim_holder(cell.cell_key) or {}
        ctx.log(f"{tag}: waiting for process {holder.get('pid', '?')} on {holder.get('host', '?')}, which "
                f"is training this cell (Ctrl-C stops waiting; finished cells are stored)")
        claim = ctx.store.claim_cell(cell.cell_key, cell.run_id, wait=True)
    if ctx.store.has_cell(cell.cell_key, want) and (wait or not fresh):
        claim.release()
        return None, "stored"
    return claim, "train"


def _skipped(ctx: Context, p: Protocol, cell: Cell) -> CellOutcome:
    ctx.log(f"{_tag(p, cell)}: this configuration ({cell.cfg.hash()}) is already in the store, skipped "
            f"(--fresh retrains it)")
    return CellOutcome(cell.model, cell.seed, "skipped")


def _start(ctx: Context, cell: Cell) -> Path:
    """Record the run as 'running' (the driver's rank 0) and return its directory."""
    run_dir = cell.run_dir(ctx.out_dir)
    if D.is_main():
        ctx.store.start_run(cell.run_id, model=cell.model, protocol=cell.protocol.name, dataset=cell.dataset,
                            budget=cell.cfg.budget, seed=cell.seed, run_dir=str(run_dir.resolve()),
                            config=cell.cfg.to_dict(), config_hash=cell.cfg.hash(), code_version=ctx.version,
                            cell_key=cell.cell_key, group_key=cell.group_key)
    return run_dir


def _commit(ctx: Context, cell: Cell, output: CellOutput) -> CellOutcome:
    if D.is_main():
        try:
            ctx.store.commit_cell(cell.run_id, output.measurements, output.checkpoint)
        except BaseException:          # e.g. a full disk: the rows wait in the run directory's result.json
            with contextlib.suppress(Exception):
                _mark_failed(ctx, cell, "interrupted")
            raise
    return CellOutcome(cell.model, cell.seed, "done",
                       {m.metric: m.value for m in output.measurements if m.snapshot == 0})


def _earlier_result(ctx: Context, p: Protocol, cell: Cell, fresh: bool) -> Optional[CellOutput]:
    """A result a worker finished for a driver that stopped before storing it (None under --fresh)."""
    run_dir = cell.run_dir(ctx.out_dir)
    if fresh:
        if D.is_main():
            X.clear_results(run_dir)
        return None
    output = X.read_result(run_dir, cell.cell_key) if D.is_main() else None
    if output is not None:
        ctx.log(f"{_tag(p, cell)}: finished earlier by a worker whose driver stopped before storing it; stored now "
                f"(--fresh retrains it)")
    return output


def _try_cell(p: Protocol, ctx: Context, cell: Cell, *, fresh: bool, debug: bool, wait: bool
              ) -> Optional[CellOutcome]:
    tag = _tag(p, cell)
    claim, decision = _claim(p, ctx, cell, fresh=fresh, wait=wait)
    decision = D.broadcast_object(decision)
    if decision == "busy":
        return None
    if decision == "stored":
        return _skipped(ctx, p, cell)
    try:
        earlier = D.broadcast_object(_earlier_result(ctx, p, cell, fresh))
        if earlier is not None:
            _start(ctx, cell)
            return _commit(ctx, cell, earlier)
        ctx.log(f"{tag}: training and evaluating on {cell.dataset} ({cell.cfg.budget} budget, config "
                f"{cell.cfg.hash()})")
        _start(ctx, cell)
        try:
            output = execute(ctx, cell)
        except KeyboardInterrupt:
            _mark_failed(ctx, cell, "interrupted")
            raise
        except ConfigError:
            _mark_failed(ctx, cell)
            raise
        except Exception as e:  # noqa: BLE001  one failed cell never loses the finished ones
            _mark_failed(ctx, cell)
            if debug:
                traceback.print_exc()
            msg = f"{type(e).__name__}: {e}".splitlines()[0]
            ctx.log(f"{tag}: FAILED ({msg}); other cells continue")
            return CellOutcome(cell.model, cell.seed, "failed", error=msg)
        return _commit(ctx, cell, output)
    finally:
        if claim is not None:
            claim.release()


def _mark_failed(ctx: Context, cell: Cell, status: str = "failed") -> None:
    if D.is_main():
        ctx.store.finish_run(cell.run_id, status=status)


# ---- remote engines ------------------------------------------------------------------------------------------
class Feed:
    """Cells that come while others run (a tuning study's trials): ``poll`` is called at every round of the driver's
    loop with the cells queued or running and returns new cells to run; ``finished`` is told each cell's outcome;
    ``pending`` says whether more may come."""

    def poll(self, active: List[Cell]) -> List[Cell]:
        return []

    def finished(self, cell: Cell, outcome: CellOutcome) -> None:
        pass

    def pending(self) -> bool:
        return False


@dataclass
class _Slot:
    index: int
    cell: Cell
    claim: Any
    task: X.CellTask
    retries: int = 0
    job: Optional[X.Job] = None
    state: str = "queued"            # queued (not submitted, or no worker started yet) | running | done | failed
    starts_before: int = 0           # worker starts of this task's token before the current submission
    record: Dict[str, Any] = field(default_factory=dict)   # job.json of an earlier driver (re-attach)
    started: bool = False            # its run is marked 'running' in the store (once the engine can run it)


class _Remote:
    """The driver's loop for submitit and Ray: submit, poll, ingest, retry dead workers, re-attach live ones."""

    def __init__(self, p: Protocol, ctx: Context, cells: List[Cell], opts: X.ExecutorOptions,
                 task_args: Dict[str, Any], *, fresh: bool, feed: Optional[Feed] = None):
        if D.world_size() > 1:
            raise ConfigError(f"--executor {opts.engine} starts its own workers: run the driver without torchrun "
                              f"(--gpus-per-cell N gives each cell N GPUs)")
        self.p, self.ctx, self.cells, self.opts, self.fresh = p, ctx, cells, opts, fresh
        self.task_args, self.feed, self.fed, self._driving = task_args, feed, [], False
        self.cells = list(cells)
        self.outcomes: Dict[int, CellOutcome] = {}
        self.slots: List[_Slot] = []
        self._last_status = ""
        self._counts: Dict[str, int] = {}
        self._changed = time.monotonic()      # when the status line last changed

    def run(self) -> List[CellOutcome]:
        deferred = []
        try:
            for i, cell in enumerate(self.cells):
                if not self._prepare(i, cell, wait=False):
                    deferred.append(i)
            self._feed()
            if self._pending():
                self._drive()
            for i in deferred:         # cells another driver was handling: wait for it, then run what is left
                self._prepare(i, self.cells[i], wait=True)
            if self._pending():
                self._drive()
        except BaseException:          # the driver stops (Ctrl-C, an error): its unfinished runs say so
            for s in self.slots:
                if s.started and s.state in ("queued", "running"):
                    with contextlib.suppress(Exception):
                        _mark_failed(self.ctx, s.cell, "interrupted")
            raise
        finally:
            for s in self.slots:
                if s.claim is not None:
                    s.claim.release()
        return [self.outcomes[i] for i in range(len(self.cells))]

    def _pending(self) -> bool:
        return any(s.state in ("queued", "running") for s in self.slots) or bool(self.fed) or \
            (self.feed is not None and self.feed.pending())

    def _feed(self) -> None:
        """Prepare the cells the feed gives now (a cell another driver trains waits for the next round)."""
        if self.feed is None:
            return
        active = [s.cell for s in self.slots if s.state in ("queued", "running")]
        new = self.feed.poll(active)
        self.fed += [(len(self.cells) + k, c) for k, c in enumerate(new)]
        self.cells += new
        waiting = []
        for i, cell in self.fed:
            if not self._prepare(i, cell, wait=False):
                waiting.append((i, cell))
            elif i in self.outcomes:            # stored already, or finished for a driver that stopped
                self.feed.finished(cell, self.outcomes[i])
            elif self.slots[-1].state == "running" and self._driving:     # re-attached to a live worker
                _start(self.ctx, cell)
                self.slots[-1].started = True
        self.fed = waiting

    def _prepare(self, i: int, cell: Cell, *, wait: bool) -> bool:
        ctx = self.ctx
        claim, decision = _claim(self.p, ctx, cell, fresh=self.fresh and not wait, wait=wait)
        if decision == "busy":
            return False
        if decision == "stored":
            self.outcomes[i] = _skipped(ctx, self.p, cell)
            return True
        earlier = _earlier_result(ctx, self.p, cell, self.fresh and not wait)
        if earlier is not None:
            _start(ctx, cell)
            self.outcomes[i] = _commit(ctx, cell, earlier)
            claim.release()
            return True
        run_dir = cell.run_dir(ctx.out_dir).resolve()      # marked 'running' once the engine can run it (_drive)
        record = _read_json(run_dir / X.JOB_FILE) or {}
        if X.read_failure(run_dir):   # it failed before: a new submission, from scratch unless --resume
            (run_dir / X.FAILED_FILE).unlink(missing_ok=True)
            record = {}
        gpus = self._gpus(cell)
        task = X.CellTask(self.p.name, cell.model, cell.seed, cell.cfg, cell.cell_key, str(run_dir),
                          gpus=gpus, log=str(run_dir / "worker.log") if self.opts.engine in ("ray", "local")
                          else None,
                          **self.task_args)
        if record.get("token"):       # the same submission as before: its worker continues from the checkpoint
            task.token = record["token"]
        slot = _Slot(i, cell, claim, task, record=record)
        if record and X.worker_alive(run_dir):
            slot.job, slot.state = X.AttachedJob(run_dir, record), "running"
            ctx.log(f"{_tag(self.p, cell)}: re-attached to its running worker (job {record.get('job_id', '?')}; "
                    f"log {record.get('log', '?')})")
        self.slots.append(slot)
        return True

    def _gpus(self, cell: Cell) -> float:
        if self.opts.gpus_per_cell is not None:
            return self.opts.gpus_per_cell
        return 0 if cell.cfg.train.device == "cpu" else 1

    def _cpus(self, cells: List[Cell]) -> int:
        """CPUs the engine reserves per cell: ``--cpus-per-cell``, else the cells' threads on CPU (part of their
        config) or a quarter of this machine's CPUs for GPU cells (the driver's machine: on a cluster whose
        nodes differ from it, say --cpus-per-cell)."""
        threads = max(c.cfg.train.threads for c in cells) if cells[0].cfg.train.device == "cpu" else 0
        if self.opts.cpus_per_cell is not None:
            if self.opts.cpus_per_cell < threads:
                raise ConfigError(f"--cpus-per-cell {self.opts.cpus_per_cell} is fewer than the {threads} threads "
                                  f"of these CPU cells (train.threads, part of their config): give at least "
                                  f"{threads}, or --set train.threads={self.opts.cpus_per_cell}")
            return self.opts.cpus_per_cell
        return threads or max(1, X._cpus() // 4)

    def _drive(self) -> None:
        cells = [s.cell for s in self.slots] or self.cells
        cpus, gpus = self._cpus(cells), max(self._gpus(c) for c in cells)
        engine = X.make_engine(self.opts, self.ctx.out_dir, cpus, gpus)
        try:
            if hasattr(engine, "check"):      # a request the cluster can never meet: refused before anything waits
                engine.check(cpus, gpus, cells[0].cfg.train.device)
            for s in self.slots:
                if not s.started:
                    _start(self.ctx, s.cell)
                    s.started = True
            self.ctx.log(f"[{self.p.name}] executor {self.opts.engine}"
                         f"{' (' + engine.cluster + ')' if getattr(engine, 'cluster', '') else ''}: "
                         f"{sum(s.state == 'queued' for s in self.slots)} cell(s) to run, "
                         f"{cpus} CPU(s) and {gpus:g} GPU(s) each")
            for s in self.slots:       # jobs an earlier driver submitted that the engine will still run
                if s.state == "queued" and s.job is None and s.record:
                    job = engine.reattach(s.record)
                    if job is not None:
                        s.job, s.state = job, "running"
                        s.starts_before = _starts(Path(s.task.run_dir), s.task.token)
                        self.ctx.log(f"{_tag(self.p, s.cell)}: re-attached to job {job.id} of an earlier driver; "
                                     f"log {job.log}")
            self._driving = True
            while self._pending():
                self._feed()
                self._submit(engine)
                for s in self.slots:
                    if s.state == "running" and s.job is not None and s.job.done():
                        self._finish(s)
                self._status()
                self._note_stall(engine)
                if self._pending():
                    time.sleep(self.opts.poll_s)
        except KeyboardInterrupt:
            self.ctx.log(f"[{self.p.name}] driver interrupted: workers that are running keep running (Slurm) or "
                         f"stop with this process (local engines); rerun the same command to re-attach and store "
                         f"their results")
            raise
        finally:
            engine.close()

    def _submit(self, engine) -> None:
        queued = [s for s in self.slots if s.state == "queued" and s.job is None]
        limit = getattr(engine, "throttle", None)
        if limit is not None:
            in_flight = sum(s.state == "running" for s in self.slots)
            queued = queued[:max(0, limit - in_flight)]
        if not queued:
            return
        for s in queued:               # a feed's cells come after the run's were marked
            if not s.started:
                _start(self.ctx, s.cell)
                s.started = True
        jobs = engine.submit([s.task for s in queued])
        for s, job in zip(queued, jobs):
            s.job, s.state = job, "running"
            run_dir = Path(s.task.run_dir)
            s.starts_before = _starts(run_dir, s.task.token)
            X.atomic_write(run_dir / X.JOB_FILE, _dumps({"engine": self.opts.engine, "job_id": job.id,
                                                         "token": s.task.token, "log": job.log}))
            self.ctx.log(f"{_tag(self.p, s.cell)}: submitted as job {job.id} (config {s.cell.cfg.hash()}); "
                         f"log {job.log or run_dir}")

    def _finish(self, s: _Slot) -> None:
        tag, ctx = _tag(self.p, s.cell), self.ctx
        run_dir = Path(s.task.run_dir)
        try:
            out = s.job.outcome()
        except X.WorkerLost as e:
            if s.retries < self.opts.retries:
                s.retries += 1
                ctx.log(f"{tag}: worker lost ({e}); retry {s.retries} of {self.opts.retries}, continuing from "
                        f"its last checkpoint")
                s.job, s.state = None, "queued"
                return
            out = {"status": "failed", "error": f"worker lost {s.retries + 1} time(s): {e}"}
        output = X.read_result(run_dir, s.cell.cell_key) if out.get("status") == "done" else None
        if output is not None:
            self.outcomes[s.index] = _commit(ctx, s.cell, output)
            s.state = "done"
            ctx.log(f"{tag}: done, stored")
        else:
            error = out.get("error") or "the worker reported success but left no result.json"
            _mark_failed(ctx, s.cell)
            self.outcomes[s.index] = CellOutcome(s.cell.model, s.cell.seed, "failed", error=error)
            s.state = "failed"
            ctx.log(f"{tag}: FAILED ({error}); log {s.job.log or run_dir}; other cells continue")
        if s.claim is not None:
            s.claim.release()
            s.claim = None
        if self.feed is not None:
            self.feed.finished(s.cell, self.outcomes[s.index])

    def _status(self) -> None:
        counts = {k: 0 for k in ("queued", "running", "done", "failed")}
        for s in self.slots:
            state = s.state
            if state == "running" and not isinstance(s.job, X.AttachedJob) and \
                    _starts(Path(s.task.run_dir), s.task.token) <= s.starts_before:
                state = "queued"           # submitted, no worker started yet (a pending Slurm array task)
            counts[state] += 1
        line = " · ".join(f"{n} {k}" for k, n in counts.items())
        self._counts = counts
        if line != self._last_status:
            self._last_status, self._changed = line, time.monotonic()
            self.ctx.log(f"[{self.p.name}] cells: {line}")

    def _note_stall(self, engine) -> None:
        """Cells queued and none running for ``--stall-after`` seconds: say what the queue waits for (and again
        after as long)."""
        waited = time.monotonic() - self._changed
        if self._counts.get("running") or not self._counts.get("queued") or waited < self.opts.stall_after_s:
            return
        self._changed = time.monotonic()
        ids = [s.job.id for s in self.slots if s.job is not None and s.state == "running"]
        what = engine.waiting_for(ids) if hasattr(engine, "waiting_for") else "the engine to start them"
        self.ctx.log(f"[{self.p.name}] no cell has started for {waited:.0f} s ({self._counts['queued']} queued): "
                     f"waiting for {what}")


def _starts(run_dir: Path, token: str) -> int:
    attempts = _read_json(run_dir / X.ATTEMPTS_FILE) or []
    return sum(a.get("token") == token for a in attempts) if isinstance(attempts, list) else 0


def _read_json(path: Path) -> Optional[Any]:
    import json
    try:
        return json.loads(path.read_text()) if path.is_file() else None
    except ValueError:
        return None


def _dumps(d: dict) -> str:
    import json
    return json.dumps(d, indent=1)
