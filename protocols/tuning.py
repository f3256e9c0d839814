"""Equal-budget tuning studies: every model of a protocol searched the same way, then confirmed.

Lucic et al., "Are GANs Created Equal?" (NeurIPS 2018; google/compare_gan ``generate_tasks_lib.py``): with an equal
search budget per model most published GAN improvements vanish; report the distribution over a random search and
the best score against the number of trials, not one hand-picked run.  Here::

    python -m protocols.run --protocol ablation --dataset digits --tune 16                 # random search (Lucic)
    python -m protocols.run --protocol ablation --model gan --model avade --tune 8 --criterion pareto --sampler nsga2
    python -m protocols.run --protocol ablation --tune 16 --prune median --workers 2 --dry-run   # space and budget

1. **One Optuna study per model**, the same number of trials each (ask/tell: the suite's driver asks a
   configuration, runs it as a cell of the ``tune`` protocol on any executor and tells the result).  Random
   sampling by default, TPE or NSGA-II as options; the sampler of trial ``n`` is seeded from (study seed, n), so a
   study is reproducible and a resumed one asks what an uninterrupted one would (TPE and NSGA-II ask in batches of
   ``--workers`` trials, each batch after the one before has ended: reproducible for a given ``--workers``).  With
   random search the draws are paired: trial ``n`` of every model tries the same values of the knobs they share
   (common random numbers; the spaces list shared knobs in one order).
2. **Spaces declared beside each model's registration** (:mod:`models.spaces`); models whose spaces differ in a
   knob they share are refused.  Every trial trains at one seed (:data:`SEARCH_SEED` + the study seed), never a
   seed of the confirmation.
3. **Selection on the validation split** (:mod:`protocols.trials`: the trials never read the test split) by the
   study's criterion: ``fid``, ``bpd``, or ``pareto`` (both; the Pareto front's trial nearest the ideal point after
   scaling each criterion to its range over the study's trials).  Then the **confirmation**: the protocol's cells
   of each tuned model at its selected configuration with the confirmation seeds (``--seed``/``--seeds``), judged
   on the test split, and the protocol's claims re-judged there, each verdict saying how its sides were tuned
   (:func:`protocols.verdicts.tuning_evidence`).
4. **Pruning at the snapshots** (``--prune median|hyperband``; ``none`` for a pure Lucic study): the driver reads
   each running trial's ``snapshots.json``, reports the criterion to the pruner and answers through ``prune.json``
   in the run directory; a pruned trial stops at its next snapshot, on every executor.  Pruned and diverged (NaN)
   trials are recorded as such; the study goes on.
5. The driver alone writes the results store and the studies' storage (an Optuna journal per study beside the
   store, :func:`open_storage`); a study killed at any point resumes where it stopped: a trial asked before is
   never asked again; one that was running continues from its checkpoint.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

from common.studies import TRIAL_PROTOCOL, StudyRecords
from metrics import keys as K
from models.spaces import Knob, Space, SpaceError, apply_specs, check_equal, keys_of, settings, space_for

from . import distributed as D
from . import tables  # noqa: F401  (registers the protocols, the trials' among them)
from .base import PROTOCOLS, Context, Protocol
from .config import ConfigError, Override, RunConfig, applies, as_overrides, has_key, resolve
from .scheduler import CellOutcome, Feed
from .trials import PRUNE_FILE, TRIAL_FILE, read_json

CRITERIA = ("fid", "bpd", "pareto")
SAMPLERS = ("random", "tpe", "nsga2")
PRUNERS = ("none", "median", "hyperband")
#: every trial trains at this seed + the study seed; a confirmation seed never equals it
SEARCH_SEED = 10_000
#: ``judged`` of a trial that is not pruned: its worker never waits for a verdict
NOT_PRUNED = 1 << 30
#: the stored metric of each criterion
CRITERION_METRICS = {"fid": (K.FID,), "bpd": (K.BPD,), "pareto": (K.FID, K.BPD)}


def _digest(obj: Any, n: int = 10) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


# ---- what a study is ----------------------------------------------------------------------------------------------
@dataclass
class StudySpec:
    """One ``--tune`` command: a study per model of ``protocol`` (or of ``models``), ``trials`` each."""

    protocol: str
    trials: int
    models: Optional[Sequence[str]] = None
    dataset: str = "digits"
    budget: str = "cpu"
    recipe: Optional[str] = None
    criterion: str = "fid"
    sampler: str = "random"
    pruner: Any = "none"            # a name of PRUNERS, or an Optuna pruner object (the Python API)
    seed: int = 0                   # the samplers' seed: a study is reproducible
    space: Sequence[str] = ()       # --space KNOB=LOW:HIGH | KNOB=A|B | KNOB=off, for every model with the knob
    overrides: Any = None           # --set, as for any run (not a knob of the space)
    confirm_seed: int = 0           # the confirmation's first seed
    confirm_seeds: Optional[int] = None   # None: the protocol's number of seeds

    @property
    def search_seed(self) -> int:
        return SEARCH_SEED + self.seed

    @property
    def pruner_name(self) -> str:
        return self.pruner if isinstance(self.pruner, str) else type(self.pruner).__name__

    def check(self) -> "StudySpec":
        if isinstance(self.trials, bool) or not isinstance(self.trials, int) or self.trials < 1:
            raise ConfigError(f"--tune takes the number of trials per model, at least 1, not {self.trials}")
        for what, value, valid in (("criterion", self.criterion, CRITERIA), ("sampler", self.sampler, SAMPLERS)):
            if value not in valid:
                raise ConfigError(f"unknown --{what} {value!r}; valid: {', '.join(valid)}")
        if isinstance(self.pruner, str) and self.pruner not in PRUNERS:
            raise ConfigError(f"unknown --prune {self.pruner!r}; valid: {', '.join(PRUNERS)}")
        if self.pruner_name != "none" and self.criterion == "pareto":
            raise ConfigError("--prune needs one criterion (fid or bpd): Optuna's pruners judge single-objective "
                              "studies; use --prune none with --criterion pareto")
        if self.seed < 0 or self.confirm_seed < 0:
            raise ConfigError("--study-seed and --seed must be >= 0")
        return self


@dataclass
class ModelPlan:
    model: str
    space: Space
    base: RunConfig                 # a trial's configuration before its values (search seed, tune protocol)
    study_id: str


@dataclass
class StudyPlan:
    spec: StudySpec
    protocol: Protocol
    models: List[ModelPlan]
    overrides: List[Override]
    confirm: List[int]              # confirmation seeds
    tuning_id: str

    def info(self, mp: ModelPlan, selected: Optional[int] = None, config: str = "") -> Dict[str, Any]:
        """How ``mp``'s model was tuned: the summary every verdict at its selected configuration carries."""
        s = self.spec
        return {"how": "study", "study": mp.study_id, "trials": s.trials, "criterion": s.criterion,
                "sampler": s.sampler, "pruner": s.pruner_name, "seed": s.seed, "split": "validation",
                "space": {k.name: k.describe() for k in mp.space}, "selected_trial": selected, "config": config}


def _tune_protocol() -> Protocol:
    return PROTOCOLS.get(TRIAL_PROTOCOL)


def plan_study(spec: StudySpec, executor=None) -> StudyPlan:
    """Every check that needs no data: names, spaces (declared, equal where shared, reaching the models' configs),
    overrides (none fixes a knob), pruning (snapshots to prune at), seeds (the search's is no confirmation seed)."""
    from .executors import local_threads
    from .planning import _scoped, _unreached, model_names
    spec.check()
    p = PROTOCOLS.get(spec.protocol)
    if p.name == TRIAL_PROTOCOL or not p.trains_models:
        raise ConfigError(f"protocol {p.name} trains no model of its own to tune; --tune runs with a protocol that "
                          f"compares models (e.g. ablation)")
    if not p.claims:
        raise ConfigError(f"protocol {p.name} has no claims to confirm: --tune selects each model's configuration "
                          f"and re-judges the protocol's claims there; use a protocol with claims (e.g. ablation), "
                          f"or plain runs with --set")
    names = model_names(p, spec.models)
    spaces = {m: space_for(m) for m in names}
    spaces = apply_specs(spaces, spec.space)
    check_equal(spaces)
    over = local_threads(executor, _scoped(p, names, as_overrides(spec.overrides)))
    models = [_model_plan(spec, p, m, spaces[m], over) for m in names]
    for o in over:
        if not any(o.text in mp.base.applied for mp in models):
            raise ConfigError(_unreached(o.text, [mp.base for mp in models]))
    confirm = list(range(spec.confirm_seed, spec.confirm_seed + (spec.confirm_seeds or p.seeds)))
    if spec.search_seed in confirm:
        raise ConfigError(f"the confirmation seeds {confirm[0]}..{confirm[-1]} include the search's seed "
                          f"{spec.search_seed}: confirm with seeds the search did not use (--seed)")
    tuning_id = _digest({"protocol": p.name, "studies": [mp.study_id for mp in models]})
    return StudyPlan(spec, p, models, over, confirm, tuning_id)


def _model_plan(spec: StudySpec, p: Protocol, model: str, space: Space, over: List[Override]) -> ModelPlan:
    from models import MODELS
    if not space:
        raise ConfigError(f"every knob of {model}'s space is off: nothing to tune (--space)")
    base = resolve(model, dataset=spec.dataset, budget=spec.budget, seed=spec.search_seed, protocol=TRIAL_PROTOCOL,
                   overrides=over, protocol_settings=p.settings(), recipe=spec.recipe)
    cls = MODELS.get(model)
    phases = {ph for st in cls.stage_plan(base.model_cfg, base.train.steps) for ph in st.phases}
    for k in space:
        _check_knob(model, k, base, cls, phases)
    fixed = sorted({o.text for o in over if o.scope in (None, model) and o.key in keys_of(space)})
    if fixed:
        raise ConfigError(f"--set {', '.join(fixed)} fixes a knob of {model}'s search space; drop it, or leave the "
                          f"knob out of the search (--space KNOB=off)")
    if spec.pruner_name != "none" and base.eval.snapshots < 2:
        raise ConfigError(f"pruning acts at the snapshots along training and {model}'s trials have "
                          f"{base.eval.snapshots}: --set eval.snapshots=N (N >= 2), or --prune none")
    study = {"protocol": p.name, "dataset": spec.dataset, "budget": spec.budget, "model": model,
             "base": base.hash(), "space": [k.signature() | {"name": k.name} for k in space],
             "criterion": spec.criterion, "sampler": spec.sampler, "pruner": spec.pruner_name, "seed": spec.seed}
    return ModelPlan(model, space, base, f"{p.name}.{model}.{_digest(study)}")


def _check_knob(model: str, k: Knob, base: RunConfig, cls, phases) -> None:
    if k.key.startswith("phase_lr."):
        phase = k.key.partition(".")[2]
        if phase not in phases:
            raise SpaceError(f"knob {k.name} of {model}'s space sets the rate of phase {phase!r}, which {model} "
                             f"does not train (its phases: {', '.join(sorted(phases))})")
        return
    if not has_key(base, k.key) or not applies(base, k.key, cls):
        raise SpaceError(f"knob {k.name} of {model}'s space sets {k.key}, which {model}'s configuration does not "
                         f"have or use; fix the space declared beside its registration")


def trial_config(plan: StudyPlan, mp: ModelPlan, params: Dict[str, Any]) -> RunConfig:
    """A trial's configuration: the model's base with the trial's values (``settings`` of the space)."""
    s = plan.spec
    over = list(plan.overrides) + [Override.of(k, v) for k, v in settings(mp.space, params).items()]
    return resolve(mp.model, dataset=s.dataset, budget=s.budget, seed=s.search_seed, protocol=TRIAL_PROTOCOL,
                   overrides=over, protocol_settings=plan.protocol.settings(), recipe=s.recipe)


def dry_run(spec: StudySpec, executor=None) -> str:
    """The studies' spaces and budget as JSON (nothing is loaded, trained or written)."""
    from .config import snapshot_steps
    plan = plan_study(spec, executor)
    out = {"tune": {"protocol": plan.protocol.name, "dataset": spec.dataset, "budget": spec.budget,
                    "criterion": spec.criterion, "selected on": "the validation split", "sampler": spec.sampler,
                    "pruner": spec.pruner_name, "study_seed": spec.seed, "search_seed": spec.search_seed,
                    "trials_per_model": spec.trials, "trials": spec.trials * len(plan.models),
                    "confirmation_seeds": plan.confirm,
                    "confirmation_cells": len(plan.confirm) * (len(plan.models) + int(plan.protocol.floor)),
                    "claims": [c.text for c in plan.protocol.claims]},
           "models": {}}
    for mp in plan.models:
        steps = mp.base.train.steps
        out["models"][mp.model] = {
            "study_id": mp.study_id, "base_config_hash": mp.base.hash(), "steps": steps,
            "snapshots_at_steps": snapshot_steps(steps, mp.base.eval.snapshots),
            "space": {k.name: {"sets": k.key, "distribution": k.describe(), "about": k.about} for k in mp.space}}
    return json.dumps(out, indent=2)


# ---- Optuna: storage, samplers, pruners ------------------------------------------------------------------------
def optuna_module():
    try:
        import optuna
    except ImportError:
        raise ConfigError('--tune needs Optuna: pip install -e ".[tune]" (or pip install "optuna>=4.0")') from None
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna


def open_storage(path: Path):
    """An Optuna journal file (one line per operation, appended and fsynced), locked with ``flock`` (released by the
    operating system when a process dies, so a killed driver leaves no stale lock); a last line cut short by a kill
    is dropped before it is read."""
    optuna_module()
    from optuna.storages.journal import JournalFileBackend, JournalStorage

    class FlockLock:                    # the interface of optuna's journal file locks: acquire, release
        def __init__(self, lock_path: str):
            self.path, self.fd = lock_path, -1

        def acquire(self) -> bool:
            self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            fcntl.flock(self.fd, fcntl.LOCK_EX)
            return True

        def release(self) -> None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)

    path.parent.mkdir(parents=True, exist_ok=True)
    if path.is_file():
        data = path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)
    return JournalStorage(JournalFileBackend(str(path), lock_obj=FlockLock(f"{path}.lock")))


def make_sampler(name: str, seed: int, number: int, n_trials: int):
    """The sampler of trial ``number``, seeded from (study seed, number): a resumed study asks what an uninterrupted
    one would.  Startup / population sizes scale with the budget (Optuna's defaults assume 50+ trials)."""
    optuna = optuna_module()
    s = (seed * 100_003 + number) % 2 ** 32
    if name == "tpe":
        return optuna.samplers.TPESampler(seed=s, n_startup_trials=max(2, n_trials // 3))
    if name == "nsga2":
        return optuna.samplers.NSGAIISampler(seed=s, population_size=max(2, min(50, n_trials // 3)))
    return optuna.samplers.RandomSampler(seed=s)


def make_pruner(pruner: Any, n_trials: int, n_snapshots: int):
    optuna = optuna_module()
    if not isinstance(pruner, str):
        return pruner
    if pruner == "median":
        return optuna.pruners.MedianPruner(n_startup_trials=max(1, min(5, n_trials // 4)), n_warmup_steps=1)
    if pruner == "hyperband":
        return optuna.pruners.HyperbandPruner(min_resource=1, max_resource=max(1, n_snapshots), reduction_factor=3)
    return optuna.pruners.NopPruner()


def distributions(space: Space) -> Dict[str, Any]:
    optuna = optuna_module()
    d = optuna.distributions
    out = {}
    for k in space:
        if k.kind == "choice":
            out[k.name] = d.CategoricalDistribution(list(k.choices))
        elif k.kind == "int":
            out[k.name] = d.IntDistribution(int(k.low), int(k.high), log=k.log)
        else:
            out[k.name] = d.FloatDistribution(k.low, k.high, log=k.log)
    return out


def pareto_front(points: List[Tuple[int, float, float]]) -> List[int]:
    """Numbers of the points ``(number, a, b)`` no other point beats on both (lower is better)."""
    return sorted(n for n, a, b in points
                  if not any((a2 <= a and b2 <= b) and (a2 < a or b2 < b) for _, a2, b2 in points))


# ---- one model's study ------------------------------------------------------------------------------------------
@dataclass
class Trial:
    model: str
    number: int
    params: Dict[str, Any]
    cfg: RunConfig
    cell: Any
    handle: Any                     # optuna.trial.Trial (report, should_prune, user attributes)
    judged: int = 0                 # snapshots judged by the pruner
    decided_at: Optional[int] = None


class ModelStudy:
    """One model's Optuna study, driven by ask/tell from the driver (its only writer)."""

    def __init__(self, plan: StudyPlan, mp: ModelPlan, folder: Path):
        optuna = optuna_module()
        self.plan, self.mp, self.spec = plan, mp, plan.spec
        self.lock_fd = _driver_lock(folder / f"{mp.study_id}.driver.lock", mp.study_id)
        self.dists = distributions(mp.space)
        self.criteria = CRITERION_METRICS[self.spec.criterion]
        self.study = optuna.create_study(
            storage=open_storage(folder / f"{mp.study_id}.optuna.jsonl"), study_name=mp.study_id,
            load_if_exists=True, directions=["minimize"] * len(self.criteria),
            pruner=make_pruner(self.spec.pruner, self.spec.trials, mp.base.eval.snapshots))
        self.in_flight = 0

    @property
    def asked(self) -> int:
        return len(self.study.get_trials(deepcopy=False))

    def can_ask(self, slots: int) -> int:
        """How many trials to ask now: one at a time for random search; a whole batch of ``slots`` (once the one
        before has ended) for the model-based samplers, whose asks depend on what has ended."""
        left = self.spec.trials - self.asked
        if left <= 0:
            return 0
        if self.spec.sampler == "random":
            return 1
        return min(left, slots) if self.in_flight == 0 else 0

    def ask(self, make_cell) -> Trial:
        number = self.asked
        self.study.sampler = make_sampler(self.spec.sampler, self.spec.seed, number, self.spec.trials)
        handle = self.study.ask(fixed_distributions=self.dists)
        return self._trial(handle.number, dict(handle.params), handle, make_cell)

    def running(self, make_cell) -> List[Trial]:
        """The trials an earlier driver asked and did not tell (killed while they ran): they continue."""
        optuna = optuna_module()
        out = []
        for ft in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
            t = self._trial(ft.number, dict(ft.params), optuna.trial.Trial(self.study, ft._trial_id), make_cell)
            t.judged = max(ft.intermediate_values, default=0)
            out.append(t)
        return out

    def _trial(self, number: int, params: Dict[str, Any], handle, make_cell) -> Trial:
        cfg = trial_config(self.plan, self.mp, params)
        return Trial(self.mp.model, number, params, cfg, make_cell(cfg), handle)

    def tell(self, t: Trial, state: str, values: Dict[str, Optional[float]]) -> None:
        optuna = optuna_module()
        S = optuna.trial.TrialState
        t.handle.set_user_attr("state", state)
        if state == "complete":
            self.study.tell(t.number, [values[m] for m in self.criteria])
        else:
            self.study.tell(t.number, state=S.PRUNED if state == "pruned" else S.FAIL)

    def complete(self) -> List[Tuple[int, Dict[str, Any], List[float]]]:
        optuna = optuna_module()
        return [(ft.number, dict(ft.params), list(ft.values))
                for ft in self.study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.COMPLETE,))]

    def close(self) -> None:
        os.close(self.lock_fd)


def _driver_lock(path: Path, study_id: str) -> int:
    """One driver per study at a time (an exclusive ``flock``; the operating system drops it when the driver dies)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ConfigError(f"study {study_id} is being run by another driver (lock {path}); wait for it to end, or "
                          f"stop it and rerun this command to continue the study") from None
    return fd


# ---- the search: a feed of trial cells for the scheduler --------------------------------------------------------
class Search(Feed):
    """Asks each model's study for trials (round robin, the model with the fewest first: equal budgets at any
    moment), hands their cells to the scheduler, judges running trials at their snapshots, tells outcomes."""

    def __init__(self, plan: StudyPlan, ctx: Context, records: StudyRecords, folder: Path, slots: int):
        from .pipeline import Cell, extractor_identity
        self.plan, self.ctx, self.records, self.slots = plan, ctx, records, max(1, slots)
        self.p = _tune_protocol()
        ds = ctx.dataset
        self.make_cell = lambda cfg: Cell(self.p, cfg.model, cfg.seed, cfg, ds.name, ds.content_hash,
                                          extractor_identity(ctx, self.p, cfg))
        self.studies: Dict[str, ModelStudy] = {}
        try:
            for mp in plan.models:
                self.studies[mp.model] = ModelStudy(plan, mp, folder)
        except BaseException:
            self.close()
            raise
        self.pending_cells: List[Trial] = []
        self.active: Dict[str, List[Trial]] = {}
        self.counts: Dict[str, Dict[str, int]] = {m: {} for m in self.studies}
        for mp in plan.models:
            records.put_study(study_id=mp.study_id, tuning_id=plan.tuning_id, protocol=plan.protocol.name,
                              dataset=plan.spec.dataset, budget=plan.spec.budget, model=mp.model,
                              criterion=plan.spec.criterion, sampler=plan.spec.sampler, pruner=plan.spec.pruner_name,
                              seed=plan.spec.seed, search_seed=plan.spec.search_seed, n_trials=plan.spec.trials,
                              space={k.name: {"key": k.key, "distribution": k.describe()} for k in mp.space},
                              base_hash=mp.base.hash())
            for t in self.studies[mp.model].running(self.make_cell):
                ctx.log(f"[tune] {mp.model} trial #{t.number}: asked by an earlier driver, continues")
                self.studies[mp.model].in_flight += 1
                self.pending_cells.append(t)

    def close(self) -> None:
        for s in self.studies.values():
            s.close()

    @property
    def pruning(self) -> bool:
        return self.plan.spec.pruner_name != "none"

    def pending(self) -> bool:
        return bool(self.pending_cells) or any(s.asked < self.plan.spec.trials for s in self.studies.values())

    def poll(self, active) -> List[Any]:
        for trials in self.active.values():
            for t in trials:
                self._judge(t)
        in_flight = sum(len(v) for v in self.active.values())
        new, self.pending_cells = self.pending_cells, []
        free = self.slots - in_flight - len(new)
        while free > 0:
            ready = [(s.asked, i, s, n) for i, s in enumerate(self.studies.values())
                     for n in [s.can_ask(self.slots)] if n]
            if not ready:
                break
            _, _, study, n = min(ready, key=lambda r: r[:2])
            for _ in range(n):
                t = study.ask(self.make_cell)
                study.in_flight += 1
                self.ctx.log(f"[tune] {t.model} trial #{t.number} ({t.number + 1} of {self.plan.spec.trials}): "
                             f"{_params_text(t.params)} (config {t.cfg.hash()})")
                new.append(t)
            free -= n
        for t in new:
            self._own_dir(t)
            self.active.setdefault(t.cell.cell_key, []).append(t)
            self.records.put_trial(self.studies[t.model].mp.study_id, t.number, model=t.model, state="running",
                                   params=t.params, config_hash=t.cfg.hash(), cell_key=t.cell.cell_key,
                                   run_id=t.cell.run_id)
        return [t.cell for t in new]

    # ---- pruning through the run directory ------------------------------------------------------------------
    def _run_dir(self, t: Trial) -> Path:
        return t.cell.run_dir(self.ctx.out_dir)

    def _own_dir(self, t: Trial) -> None:
        """Make the run directory this trial's: a partial run another study left (pruned, diverged) is continued
        from its checkpoint, not taken as this trial's result; the pruning file names this study and trial."""
        from . import executors as X
        run_dir = self._run_dir(t)
        run_dir.mkdir(parents=True, exist_ok=True)
        mine = read_json(run_dir / PRUNE_FILE) or {}
        if mine.get("study") == self.studies[t.model].mp.study_id and mine.get("trial") == t.number:
            if self.pruning:
                t.judged, t.decided_at = max(t.judged, int(mine.get("judged", 0))), mine.get("decided_at")
            return
        if not X.worker_alive(run_dir):
            info = read_json(run_dir / TRIAL_FILE) or {}
            if info and info.get("state") != "complete":
                X.clear_results(run_dir)
                (run_dir / TRIAL_FILE).unlink(missing_ok=True)
        self._verdict(t, stop=False)

    def _verdict(self, t: Trial, stop: bool) -> None:
        """Write ``prune.json``: this trial's, and (without a pruner) every snapshot judged: the worker never waits."""
        from common.io import atomic_write
        judged = t.judged if self.pruning else NOT_PRUNED
        atomic_write(self._run_dir(t) / PRUNE_FILE, json.dumps(
            {"study": self.studies[t.model].mp.study_id, "trial": t.number, "judged": judged, "stop": stop,
             "decided_at": t.decided_at}))

    def _judge(self, t: Trial) -> None:
        """Report the criterion at each snapshot the trial recorded since the last look; stop it when the pruner
        says so (the worker stops at its next snapshot)."""
        if not self.pruning or t.decided_at is not None:
            return
        metric = CRITERION_METRICS[self.plan.spec.criterion][0]
        records = [r for r in read_json(self._run_dir(t) / "snapshots.json") or []
                   if isinstance(r, dict) and int(r.get("snapshot", 0)) > t.judged]
        if not records:
            return
        for r in sorted(records, key=lambda r: int(r["snapshot"])):
            t.judged = int(r["snapshot"])
            value = next((float(v["value"]) for v in r.get("values", []) if v.get("metric") == metric), None)
            if value is not None and math.isfinite(value):
                t.handle.report(value, t.judged)
                if t.handle.should_prune():
                    t.decided_at = t.judged
                    self.ctx.log(f"[tune] {t.model} trial #{t.number}: pruned at snapshot {t.judged} "
                                 f"({metric} {value:.4g}); it stops at its next snapshot")
                    break
        self._verdict(t, stop=t.decided_at is not None)

    # ---- outcomes ---------------------------------------------------------------------------------------------
    def finished(self, cell, outcome: CellOutcome) -> None:
        queue = self.active.get(cell.cell_key) or []
        if not queue:
            return
        t = queue.pop(0)
        if not queue:
            self.active.pop(cell.cell_key, None)
        study = self.studies[t.model]
        study.in_flight -= 1
        final = {r["metric"]: r["value"] for r in self.ctx.store.query(
            "SELECT metric, value FROM measurements WHERE cell_key=? AND snapshot=0", (cell.cell_key,))}
        info = read_json(self._run_dir(t) / TRIAL_FILE) or {}
        state, error = self._state(outcome, final, info, study.criteria)
        values = {K.FID: final.get(K.FID), K.BPD: final.get(K.BPD)}
        study.tell(t, state, values)
        decided = t.decided_at if t.decided_at is not None else info.get("decided_at")
        self.records.put_trial(study.mp.study_id, t.number, model=t.model, state=state, params=t.params,
                               config_hash=t.cfg.hash(), cell_key=cell.cell_key, run_id=cell.run_id,
                               fid=values[K.FID], bpd=values[K.BPD],
                               value=values[study.criteria[0]] if state == "complete" and len(study.criteria) == 1
                               else None, snapshots=t.judged, decided_at=decided,
                               stopped_at=info.get("stopped_at"), error=error)
        counts = self.counts[t.model]
        counts[state] = counts.get(state, 0) + 1
        measured = ", ".join(f"{m} {v:.4g}" for m, v in values.items() if v is not None)
        self.ctx.log(f"[tune] {t.model} trial #{t.number} {state}"
                     f"{': ' + measured if measured else ''}{' (' + error + ')' if error else ''}; {t.model} so far: "
                     + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())))

    @staticmethod
    def _state(outcome: CellOutcome, final: Dict[str, float], info: dict, criteria) -> Tuple[str, str]:
        if outcome.status == "failed":
            return ("diverged" if "NonFiniteLoss" in outcome.error else "failed"), outcome.error
        if all(final.get(m) is not None for m in criteria):
            return "complete", ""
        if info.get("state") in ("pruned", "diverged"):
            return info["state"], str(info.get("error") or "")
        return "failed", f"no final {', '.join(criteria)} stored"

    # ---- selection -------------------------------------------------------------------------------------------
    def select(self) -> Dict[str, Dict[str, Any]]:
        """The selected trial of each model (see the module docstring); a model with no complete trial has none."""
        out = {}
        for model, study in self.studies.items():
            done = study.complete()
            if not done:
                self.ctx.log(f"[tune] {model}: no trial completed (pruned, diverged or failed): nothing to confirm")
                continue
            stored = {r["number"]: r for r in self.records.trials(study.mp.study_id)}
            points = [(n, stored[n]["fid"], stored[n]["bpd"]) for n, _, _ in done
                      if n in stored and stored[n]["fid"] is not None and stored[n]["bpd"] is not None]
            front = pareto_front(points)
            number = _choose(done, self.plan.spec.criterion)
            params = next(p for n, p, _ in done if n == number)
            cfg = trial_config(self.plan, study.mp, params)
            self.records.select(study.mp.study_id, number, params, cfg.hash(), front)
            out[model] = {"trial": number, "params": params, "values": next(v for n, _, v in done if n == number),
                          "config": cfg.hash(), "settings": settings(study.mp.space, params), "front": front}
        return out


def _choose(done: List[Tuple[int, Dict[str, Any], List[float]]], criterion: str) -> int:
    """The lowest criterion (ties: the earlier trial); for ``pareto`` the front's trial nearest the ideal point
    after scaling each criterion to its range over the complete trials."""
    if criterion != "pareto":
        return min(done, key=lambda d: (d[2][0], d[0]))[0]
    front = set(pareto_front([(n, v[0], v[1]) for n, _, v in done]))
    lows = [min(v[i] for _, _, v in done) for i in (0, 1)]
    spans = [max(v[i] for _, _, v in done) - lows[i] or 1.0 for i in (0, 1)]
    dist = {n: math.hypot(*((v[i] - lows[i]) / spans[i] for i in (0, 1))) for n, _, v in done if n in front}
    return min(dist, key=lambda n: (dist[n], n))


def _params_text(params: Dict[str, Any]) -> str:
    return ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


# ---- the command ------------------------------------------------------------------------------------------------
@dataclass
class StudyResult:
    plan: StudyPlan
    selected: Dict[str, Dict[str, Any]]
    confirmation: Any = None                 # protocols.api.ProtocolResult of the confirmation (None: not run)
    failed_trials: int = 0
    notes: List[str] = field(default_factory=list)


def studies_folder(results: Path) -> Path:
    """Where the Optuna journals of a store's studies live: ``<store>.studies/`` beside the store."""
    return Path(results).with_name(Path(results).name + ".studies")


def run_study(spec: StudySpec, *, executor=None, data_root: Optional[str] = None, download: bool = False,
              results: Optional[Path] = None, out: Optional[Path] = None, progress: bool = True, debug: bool = False,
              confirm: bool = True) -> StudyResult:
    """Search, select, confirm (see the module docstring); resumes whatever an earlier run of the same studies left."""
    import torch

    from common.memory import keep_freed_memory
    from common.store import ResultsStore

    from .api import default_cache, default_out, default_results, run_protocol, usable_dir
    from .datasets import load_dataset
    from .planning import preflight_data, preflight_extractors
    from .scheduler import run_cells
    if D.world_size() > 1:
        raise ConfigError("--tune runs its trials through --executor: start the driver without torchrun")
    plan = plan_study(spec, executor)
    optuna_module()
    keep_freed_memory()
    threads = torch.get_num_threads()
    cfgs = [mp.base for mp in plan.models]
    preflight_extractors(plan.protocol, cfgs)
    device = D.init_from_env(cfgs[0].train.device)
    ds = load_dataset(spec.dataset, data_root=data_root, download=download)
    preflight_data(plan.protocol, ds, cfgs)
    store = ResultsStore(results or default_results())
    records = StudyRecords(store)
    out_dir = usable_dir(Path(out or default_out()), "--out")
    ctx = Context(dataset=ds, budget=spec.budget, store=store, out_dir=out_dir, device=device, resume=True,
                  cache_dir=usable_dir(default_cache(out_dir), "cache"), progress=progress)
    try:
        _warm_extractor(ctx, cfgs)
        slots = (executor.workers if executor is not None and executor.workers else
                 1 if executor is None or executor.engine == "local" else spec.trials * len(plan.models))
        search = Search(plan, ctx, records, studies_folder(store.path), slots)
        try:
            ctx.log(f"[tune] {len(plan.models)} studies of {spec.trials} trials ({', '.join(search.studies)}), "
                    f"{spec.sampler} sampler, criterion {spec.criterion} on the validation split, pruner "
                    f"{spec.pruner_name}, {slots} at a time; storage {studies_folder(store.path)}")
            task_args = {"dataset": spec.dataset, "data_root": data_root, "download": download,
                         "out_dir": str(out_dir.resolve()), "cache_dir": str(ctx.cache_dir.resolve()), "resume": True,
                         "progress": False, "env": {k: v for k, v in os.environ.items() if k.startswith("AVADE_")}}
            outcomes = run_cells(_tune_protocol(), ctx, [], fresh=False, debug=debug, executor=executor,
                                 task_args=task_args, feed=search)
            selected = search.select()
        finally:
            search.close()
    finally:
        torch.set_num_threads(threads)
    result = StudyResult(plan, selected, failed_trials=sum(o.status == "failed" for o in outcomes))
    if confirm and selected:
        result.confirmation = _confirm(plan, selected, records, executor=executor, data_root=data_root,
                                       download=download, results=store.path, out=out_dir, progress=progress,
                                       debug=debug, run_protocol=run_protocol)
    return result


def _warm_extractor(ctx: Context, cfgs: List[RunConfig]) -> None:
    """Train (or load) the trials' domain classifier once in the driver, before workers would each train it."""
    from .evaluate import extractor_for
    from .trials import validation_view
    if any(c.eval.extractor != "domain" for c in cfgs) or ctx.dataset.train_y is None:
        return
    vctx = replace(ctx, dataset=validation_view(ctx.dataset), _extractors={})
    for threads in sorted({c.train.threads for c in cfgs}):
        extractor_for(vctx, next(c for c in cfgs if c.train.threads == threads))


def _confirm(plan: StudyPlan, selected: Dict[str, Dict[str, Any]], records: StudyRecords, *, run_protocol,
             **kw) -> Any:
    """The protocol's cells of each tuned model at its selected configuration, with the confirmation seeds (on
    the test split, as any run), and the claims re-judged there with how each side was tuned."""
    s = plan.spec
    over = list(plan.overrides)
    tuning = {}
    for mp in plan.models:
        if mp.model not in selected:
            continue
        sel = selected[mp.model]
        over += [Override.of(_scoped_key(mp.model, k), v) for k, v in sel["settings"].items()]
        tuning[mp.model] = plan.info(mp, sel["trial"], sel["config"])
    res = run_protocol(plan.protocol.name, models=list(tuning), dataset=s.dataset, budget=s.budget,
                       seed=plan.confirm[0], seeds=len(plan.confirm), overrides=over, recipe=s.recipe,
                       tuning=tuning, **kw)
    for mp in plan.models:
        if mp.model in tuning:
            records.confirmed(mp.study_id, plan.confirm)
    return res


def _scoped_key(model: str, key: str) -> str:
    """``train.lr`` -> ``gan.train.lr``; ``model.gp_weight`` -> ``gan.gp_weight`` (a --set reaching one model)."""
    section, _, name = key.partition(".")
    return f"{model}.{name}" if section == "model" else f"{model}.{key}"


def summary(result: StudyResult) -> str:
    """The selected configurations as text (the CLI prints it before the confirmation's table)."""
    lines = [f"tuning {result.plan.tuning_id}: {result.plan.spec.trials} trials per model, criterion "
             f"{result.plan.spec.criterion} (validation split), {result.plan.spec.sampler} sampler, pruner "
             f"{result.plan.spec.pruner_name}"]
    for mp in result.plan.models:
        sel = result.selected.get(mp.model)
        if sel is None:
            lines.append(f"  {mp.model}: no trial completed")
            continue
        vals = ", ".join(f"{m} {v:.4g}" for m, v in zip(CRITERION_METRICS[result.plan.spec.criterion], sel["values"]))
        lines.append(f"  {mp.model}: trial #{sel['trial']} ({vals}; config {sel['config']}): "
                     f"{_params_text(sel['params'])}")
    return "\n".join(lines)


# ---- command line (its flags: protocols/run.py tuning_arguments, which must not load torch) -----------------------
STUDY_FLAGS = ("criterion", "sampler", "prune", "study_seed", "space")


def spec_from_args(args, overrides) -> StudySpec:
    """A StudySpec from the parsed command line (a study flag without --tune is an error)."""
    given = [f"--{f.replace('_', '-')}" for f in STUDY_FLAGS if getattr(args, f) is not None]
    if args.tune is None:
        if given or args.no_confirm:
            raise ConfigError(f"{', '.join(given) or '--no-confirm'}: option(s) of a tuning study; add --tune N")
        return None
    if args.fresh or args.resume:
        raise ConfigError("a study always continues where it stopped and never retrains a stored trial: drop "
                          "--fresh/--resume (a new study: another --study-seed or --results)")
    return StudySpec(protocol=args.protocol, trials=args.tune, models=args.model, dataset=args.dataset,
                     budget=args.budget, recipe=args.recipe, criterion=args.criterion or "fid",
                     sampler=args.sampler or "random", pruner=args.prune or "none", seed=args.study_seed or 0,
                     space=args.space or (), overrides=overrides, confirm_seed=args.seed, confirm_seeds=args.seeds)
