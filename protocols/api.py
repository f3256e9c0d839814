"""The Python API that ``python -m protocols.run`` is a thin shell over.

Importing it loads every registry (models, metrics, datasets, protocols)::

    from protocols.api import run_protocol
    from leaderboard.build import build
    res = run_protocol("ablation", dataset="digits", budget="smoke", seeds=2)
    build(res.store_path, "leaderboard/site")            # the page, as the CLI does at the end

The driver: every cell of the run is resolved and checked first (:mod:`protocols.planning`); then each cell
is identified (protocol, dataset content, model, config hash, extractor identity, seed) and handed to the
scheduler (:mod:`protocols.scheduler`: skipped only when exactly that identity is stored, claimed, run here or
through an executor, its rows committed with the run's 'done' mark); claims and the summary table are then
computed on the configurations of this run only (:mod:`protocols.verdicts`).
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from common import defaults
from common.memory import keep_freed_memory
from common.store import ResultsStore

from . import distributed as D
from . import tables  # noqa: F401  (registers the paper's protocols)
from .base import PROTOCOLS, Context
from .config import ConfigError
from .datasets import load_dataset
from .executors import ExecutorOptions, local_threads
from .pipeline import Cell, extractor_identity
from .planning import claim_configs, model_names, plan, preflight_data, preflight_extractors, resolve_cell
from .scheduler import CellOutcome, run_cells
from .verdicts import along_training, evaluate_claims, snapshot_series, stored_values, summarise

__all__ = ["PROTOCOLS", "CellOutcome", "ExecutorOptions", "ProtocolResult", "along_training", "claim_configs",
           "evaluate_claims", "model_names", "plan", "resolve_cell", "run_protocol", "snapshot_series",
           "stored_values", "summarise"]


@dataclass
class ProtocolResult:
    protocol: str
    dataset: str
    budget: str
    cells: List[CellOutcome]
    claims: List[dict]
    table: Dict[str, Dict[str, Dict[str, Any]]]    # model -> metric -> {mean, std, n}
    configs: Dict[str, str] = field(default_factory=dict)   # model -> config hash of this run
    store_path: Optional[Path] = None


# the paths every CLI shares (flags, environment variables, defaults): common/defaults.py
def default_results() -> Path:
    return defaults.results_path()


def default_site() -> Path:
    return defaults.site_dir()


def default_out() -> Path:
    return defaults.runs_dir()


def default_cache(out_dir: Path) -> Path:
    """Feature and extractor cache: $AVADE_CACHE (share it between run folders), else <out>/cache."""
    return defaults.cache_dir(out_dir)


def usable_dir(path: Path, what: str) -> Path:
    """Create ``path`` (a folder the run writes into) or fail now with a one-line message."""
    try:
        Path(path).mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{what} {path} is not a folder (a file is in the way); pass another path") from None
    except PermissionError:
        raise ConfigError(f"{what} {path} cannot be created here (permission denied); pass another path") from None
    if not os.access(path, os.W_OK):
        raise ConfigError(f"{what} {path} is not writable; pass another path")
    return Path(path)


# ---- the driver --------------------------------------------------------------------------------------------
def run_protocol(protocol: str, *, models: Optional[Sequence[str]] = None, dataset: str = "digits",
                 budget: str = "cpu", seed: int = 0, seeds: Optional[int] = None,
                 data_root: Optional[str] = None, download: bool = False, results: Optional[Path] = None,
                 out: Optional[Path] = None, overrides: Optional[Dict[str, str]] = None, resume: bool = False,
                 fresh: bool = False, progress: bool = True, debug: bool = False,
                 executor: Optional[ExecutorOptions] = None, recipe: Optional[str] = None,
                 tuning: Optional[Dict[str, dict]] = None) -> ProtocolResult:
    """Run (or complete) one protocol; see the module docstring.  Torch's thread count is restored after.
    The process keeps the memory it frees (``common.memory.keep_freed_memory``: fewer page faults per step).
    ``executor`` runs the cells through submitit or Ray (:mod:`protocols.executors`); default: here.
    ``recipe``: the optimisation recipe of every model it reaches (:mod:`models.recipes`; None: the budget's).
    ``tuning``: how each model's configuration was tuned (model -> a study's summary, :mod:`protocols.tuning`; a model
    not named: its presets), recorded with every claim's verdict."""
    import torch
    keep_freed_memory()
    threads = torch.get_num_threads()
    try:
        return _run_protocol(protocol, models=models, dataset=dataset, budget=budget, seed=seed, seeds=seeds,
                             data_root=data_root, download=download, results=results, out=out,
                             overrides=overrides, resume=resume, fresh=fresh, progress=progress, debug=debug,
                             executor=executor.check() if executor is not None else None, recipe=recipe,
                             tuning=tuning)
    finally:
        torch.set_num_threads(threads)


def _run_protocol(protocol: str, *, models, dataset, budget, seed, seeds, data_root, download, results, out,
                  overrides, resume, fresh, progress, debug, executor, recipe=None, tuning=None) -> ProtocolResult:
    p = PROTOCOLS.get(protocol)
    n_seeds = seeds if seeds is not None else p.seeds
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {n_seeds}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, not {seed}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    overrides = local_threads(executor, overrides)      # --workers N here: the cores split between the workers
    if executor is not None and (executor.gpus_per_cell or 0) > 1:
        world = int(executor.gpus_per_cell)       # each cell runs as a torchrun of that many processes
    cfgs, _ = plan(protocol, models, range(seed, seed + n_seeds), dataset=dataset, budget=budget,
                   overrides=overrides, world=world, recipe=recipe)
    devices = {c.train.device for c in cfgs}
    if len(devices) > 1:
        raise ConfigError(f"the cells of one run must share train.device, got {', '.join(sorted(devices))}")
    preflight_extractors(p, cfgs)
    device = D.init_from_env(cfgs[0].train.device)
    ds = load_dataset(dataset, data_root=data_root, download=download)
    preflight_data(p, ds, cfgs)
    store = ResultsStore(results or default_results())
    out_dir = usable_dir(Path(out or default_out()), "--runs")
    ctx = Context(dataset=ds, budget=budget, store=store, out_dir=out_dir, device=device, resume=resume,
                  cache_dir=usable_dir(default_cache(out_dir), "cache"), progress=progress)
    cells = [Cell(p, c.model, c.seed, c, ds.name, ds.content_hash, extractor_identity(ctx, p, c)) for c in cfgs]
    claim_cfgs = claim_configs(p, {c.model for c in cfgs}, seed, dataset=dataset, budget=budget,
                               overrides=overrides, world=world, recipe=recipe)  # before training: nothing fails after it
    task_args = {"dataset": dataset, "data_root": data_root, "download": download, "out_dir": str(out_dir.resolve()),
                 "cache_dir": str(ctx.cache_dir.resolve()), "resume": resume, "progress": False,
                 "env": {k: v for k, v in os.environ.items() if k.startswith("AVADE_")}}
    outcomes = run_cells(p, ctx, cells, fresh=fresh, debug=debug, executor=executor, task_args=task_args)
    groups = {c.model: c.group_key for c in cells}
    for c in claim_cfgs:  # models of the claims that this run did not train: the same configuration rules
        groups.setdefault(c.model, Cell(p, c.model, c.seed, c, ds.name, ds.content_hash,
                                        extractor_identity(ctx, p, c)).group_key)
    configs = {m: next(c.cfg.hash() for c in cells if c.model == m) for m in dict.fromkeys(c.model for c in cells)}
    extractor = p.extractor or cfgs[0].eval.extractor
    claims = evaluate_claims(p, store, ds.name, budget, extractor, groups,
                             {**{c.model: c.hash() for c in claim_cfgs}, **configs},
                             n_snapshots=max(c.eval.snapshots for c in cfgs), tuning=tuning)
    table = summarise(stored_values(store, {m: groups[m] for m in configs}))
    D.barrier()
    return ProtocolResult(p.name, ds.name, budget, outcomes, claims, table, configs, store.path)
