"""The Python API that ``python -m protocols.run`` is a thin shell over.

Importing it loads every registry (models, metrics, datasets, protocols)::

    from protocols.api import run_protocol
    from leaderboard.build import build
    res = run_protocol("ablation", dataset="digits", budget="smoke", seeds=2)
    build(res.store_path, "leaderboard/site")            # the page, as the CLI does at the end

The driver: every cell of the run is resolved and checked first (names, overrides, values, the device, the
Inception file, that the dataset suits the extractor); then each cell is identified (protocol, dataset
content, model, config hash, extractor identity, seed), skipped only when exactly that identity is stored
(``fresh=True`` retrains it), claimed in the store so no two processes train it, trained and evaluated, and
its rows committed together with the run's 'done' mark.  Claims and the summary table are computed on the
configurations of this run only.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from common.memory import keep_freed_memory

from . import distributed as D
from . import tables  # noqa: F401  (registers the paper's protocols)
from .base import PROTOCOLS, Context, Protocol
from .claims import FLOOR, Values, at_snapshot, trajectory, where
from .config import BUDGETS, ConfigError, Override, RunConfig, as_overrides, has_key, resolve
from .datasets import load_dataset
from .executors import ExecutorOptions
from .pipeline import Cell, extractor_identity
from .scheduler import CellOutcome, run_cells
from common.store import ResultsStore


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


def default_results() -> Path:
    return Path(os.environ.get("AVADE_RESULTS", "results/results.sqlite"))


def default_site() -> Path:
    return Path(os.environ.get("AVADE_SITE", "leaderboard/site"))


def default_out() -> Path:
    return Path(os.environ.get("AVADE_RUNS", "runs"))


def default_cache(out_dir: Path) -> Path:
    """Feature and extractor cache: $AVADE_CACHE (share it between run folders), else <out>/cache."""
    return Path(os.environ["AVADE_CACHE"]) if os.environ.get("AVADE_CACHE") else Path(out_dir) / "cache"


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


# ---- planning: every cell resolved and checked before any work --------------------------------------
def model_names(p: Protocol, models: Optional[Sequence[str]] = None) -> List[str]:
    names: List[str] = []
    for m in models or p.models:
        name = p.resolve_model(m)
        if p.trains_models:
            from models import MODELS
            MODELS.get(name)        # unknown model: a one-line error listing the valid ones
        elif name not in p.models:
            raise ConfigError(f"unknown cell {m!r} of protocol {p.name}; its cells: {', '.join(p.models)}")
        if name not in names:
            names.append(name)
    return names


def _scoped(p: Protocol, names: List[str], overrides: List[Override]) -> List[Override]:
    """Overrides with model scopes mapped through the protocol's aliases; a scope outside the run is an error."""
    out = []
    for o in overrides:
        if o.scope is not None:
            target = p.resolve_model(o.scope)
            if target not in names:
                raise ConfigError(f"--set {o.text}: {o.scope!r} is not a model of this run (models: "
                                  f"{', '.join(names)}); use {o.key} for every model, or --model {o.scope}")
            o = o.rescoped(target) if target != o.scope else o
        out.append(o)
    return out


def resolve_cell(p: Protocol, model: str, seed: int, *, dataset: str, budget: str, overrides: List[Override],
                 world: int = 1) -> RunConfig:
    return resolve(model, dataset=dataset, budget=budget, seed=seed, protocol=p.name, overrides=overrides,
                   protocol_settings=p.settings(), world=world, registered=p.trains_models and model != FLOOR)


def plan(protocol: str, models: Optional[Sequence[str]] = None, seeds: Sequence[int] = (0,), *,
         dataset: str = "digits", budget: str = "cpu", overrides: Any = None,
         world: int = 1) -> Tuple[List[RunConfig], Dict[str, List[str]]]:
    """Every cell's resolved config, and which models each override reached (an override that reaches no
    model of the run is an error).  ``overrides``: ``{key: value}`` or parsed :class:`Override` s."""
    p = PROTOCOLS.get(protocol)
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; valid budgets: {', '.join(BUDGETS)}")
    names = model_names(p, models) + ([FLOOR] if p.floor else [])
    over = _scoped(p, names, as_overrides(overrides))
    cfgs = [resolve_cell(p, m, s, dataset=dataset, budget=budget, overrides=over, world=world)
            for m in names for s in seeds]
    reach = {o.text: sorted({c.model for c in cfgs if o.text in c.applied}) for o in over}
    for key, reached in reach.items():
        if not reached:
            raise ConfigError(_unreached(key, cfgs))
    return cfgs, reach


def claim_configs(p: Protocol, trained: Set[str], seed: int, *, dataset: str, budget: str,
                  overrides: Any = None, world: int = 1) -> List[RunConfig]:
    """The configuration each model of ``p``'s claims is compared at: the run's unscoped overrides on every
    model (``--set train.lr=..`` means the same for the models this run did not train).  A model outside the
    run that those overrides make invalid (``train.phase_lr=disc=..`` for the VAE, which has no ``disc``
    phase) has no comparable configuration: it is left out, and the claims that need it lack evidence."""
    if not p.claims:
        return []
    unscoped = [o for o in as_overrides(overrides) if o.scope is None]
    out = []
    for m in model_names(p) + ([FLOOR] if p.floor else []):
        try:
            out.append(resolve_cell(p, m, seed, dataset=dataset, budget=budget, overrides=unscoped, world=world))
        except ConfigError:
            if m in trained:
                raise
    return out


def _unreached(key: str, cfgs: List[RunConfig]) -> str:
    models = sorted({c.model for c in cfgs})
    having = [c.model for c in cfgs if has_key(c, key)]
    if not having:
        return (f"unknown config key {key!r} for {', '.join(models)}; see --dry-run for every key "
                f"(a model key applies to the models that have it)")
    return (f"--set {key} has no effect on {', '.join(sorted(set(having)))} (their configuration does not use it, "
            f"e.g. a discriminator setting on a model without one)")


# ---- preflight: what would fail late fails now -----------------------------------------------------------
def preflight_extractors(p: Protocol, cfgs: List[RunConfig]) -> None:
    """Load the Inception network once when any cell will need it (seconds, not the hours of a paper run)."""
    import metrics
    if p.extractor is not None:
        return
    for weights in sorted({c.eval.inception_weights for c in cfgs if c.eval.extractor == "inception"}):
        metrics.load_extractor("inception", levels=256, inception_weights=weights or None)


def preflight_data(p: Protocol, ds, cfgs: List[RunConfig]) -> None:
    """Checks that need the dataset: labels, the extractor, the batch size, and each model's structure."""
    if p.needs_labels:
        plain = sorted({c.model for c in cfgs if not getattr(c.model_cfg, "conditional", False)})
        if plain:
            raise ConfigError(f"protocol {p.name} needs class-conditional models; {', '.join(plain)} "
                              f"{'is' if len(plain) == 1 else 'are'} not (models: {', '.join(p.models)})")
    if p.needs_labels and ds.train_y is None:
        raise ConfigError(f"protocol {p.name} needs class labels, and dataset {ds.name} has no labels")
    if p.extractor is None and ds.train_y is None and any(c.eval.extractor == "domain" for c in cfgs):
        raise ConfigError(f"the domain extractor is a classifier and {ds.name} has no labels: use "
                          f"--set eval.extractor=inception with --inception-weights FILE")
    for c in cfgs:
        if c.train.batch_size * c.world > len(ds.train_x):
            raise ConfigError(f"{c.model}: train.batch_size={c.train.batch_size} x {c.world} process(es) exceeds "
                              f"the {len(ds.train_x)} training images of {ds.name}; lower train.batch_size")
    if p.trains_models:
        _check_builds([c for c in cfgs if c.model_cfg is not None], ds.spec)


def _check_builds(cfgs: List[RunConfig], spec) -> None:
    """Build each distinct model on the meta device (no memory, no compute): structural errors now."""
    import torch
    from models import build_model
    seen = set()
    for c in cfgs:
        if c.hash() in seen:
            continue
        seen.add(c.hash())
        try:
            with torch.device("meta"):
                build_model(c.model, c.model_cfg, spec)
        except (ValueError, KeyError, RuntimeError, AssertionError, ZeroDivisionError) as e:
            msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise ConfigError(f"{c.model} cannot be built for {spec.channels}x{spec.resolution}x{spec.resolution} "
                              f"images with this configuration: {msg}") from None


# ---- stored values, claims and the summary, per configuration -----------------------------------------
def stored_values(store: ResultsStore, groups: Dict[str, str]) -> Values:
    """model -> metric -> values over seeds, from the rows of each model's group (one configuration); when a
    seed was measured more than once (--fresh), its newest value counts.  ``meta`` holds each (model, metric)'s
    smallest sample count and feature dimension (claims refuse to decide on too few samples)."""
    by_key = {g: m for m, g in groups.items()}
    newest: Dict[tuple, dict] = {}
    rows = store.query("SELECT group_key, seed, metric, value, n_samples, extra FROM measurements WHERE snapshot=0 "
                       "AND group_key IN (%s) ORDER BY id" % ",".join("?" * len(by_key)), tuple(by_key)) if by_key else []
    for r in rows:
        newest[(by_key[r["group_key"]], r["seed"], r["metric"])] = r
    vals = Values()
    for (model, _seed, metric), r in sorted(newest.items(), key=lambda kv: kv[0]):
        vals.setdefault(model, {}).setdefault(metric, []).append(r["value"])
        dim = json.loads(r["extra"] or "{}").get("feature_dim")
        meta = vals.meta.setdefault((model, metric), {"n": r["n_samples"], "dim": dim})
        meta["n"] = min(meta["n"], r["n_samples"]) if meta["n"] else r["n_samples"]
    return vals


def snapshot_series(store: ResultsStore, groups: Dict[str, str]) -> Tuple[Dict[int, Values], Dict[int, dict]]:
    """Per snapshot index: model -> metric -> values over seeds (as :func:`stored_values`, from snapshot rows),
    and model -> mean training images seen there."""
    by_key = {g: m for m, g in groups.items()}
    if not by_key:
        return {}, {}
    rows = store.query("SELECT group_key, seed, metric, value, n_samples, extra, snapshot, images_seen FROM "
                       "measurements WHERE snapshot>0 AND group_key IN (%s) ORDER BY id"
                       % ",".join("?" * len(by_key)), tuple(by_key))
    series: Dict[int, Values] = {}
    images: Dict[int, Dict[str, List[int]]] = {}
    for r in rows:
        model = by_key[r["group_key"]]
        vals = series.setdefault(r["snapshot"], Values())
        vals.setdefault(model, {}).setdefault(r["metric"], []).append(r["value"])
        dim = json.loads(r["extra"] or "{}").get("feature_dim")
        vals.meta.setdefault((model, r["metric"]), {"n": r["n_samples"], "dim": dim})
        if r["images_seen"] >= 0:
            images.setdefault(r["snapshot"], {}).setdefault(model, []).append(r["images_seen"])
    seen = {i: {m: mean(v) for m, v in per.items()} for i, per in images.items()}
    return series, seen


def along_training(claim, series: Dict[int, Values], seen: Dict[int, dict], n_snapshots: int) -> Optional[dict]:
    """The claim at every snapshot: its verdict, the gap of its first comparison, the images seen; a one-line
    trajectory ("not reproduced up to 51k images, flips reproduced at 80k images")."""
    from .evaluate import SNAPSHOT_METRICS
    points = []
    for i in sorted(series):
        res = at_snapshot(claim, series[i], SNAPSHOT_METRICS)
        if res is None:
            continue
        models = {m for c in res["comparisons"] for m in (c["better"], c["worse"]) if m != FLOOR}
        imgs = {m: seen.get(i, {}).get(m) for m in sorted(models)}
        same = len({v for v in imgs.values()}) == 1 and None not in imgs.values()
        point = {"snapshot": i, "of": n_snapshots, "images": next(iter(imgs.values())) if same else None,
                 "images_by_model": imgs, "status": res["status"], "gap": res["comparisons"][0].get("gap"),
                 "detail": res}
        points.append({**point, "where": where(point)})
    if not points:
        return None
    return {"points": points, "summary": trajectory(points), "metrics": list(SNAPSHOT_METRICS)}


def evaluate_claims(p: Protocol, store: ResultsStore, dataset: str, budget: str, extractor: str,
                    groups: Dict[str, str], configs: Dict[str, str], n_snapshots: int = 0) -> List[dict]:
    values = stored_values(store, groups)
    series, seen = snapshot_series(store, groups) if n_snapshots else ({}, {})
    out = []
    for c in p.claims:
        status, evidence = c.check(values)
        curve = along_training(c, series, seen, n_snapshots) if series else None
        if curve is not None:
            evidence = {**evidence, "along_training": curve}
        if c.source:
            evidence = {**evidence, "source": c.source}
        if D.is_main():
            store.add_claim(protocol=p.name, dataset=dataset, budget=budget, claim_id=c.id, text=c.text,
                            status=status, evidence=evidence, extractor=extractor, configs=configs)
        out.append({"id": c.id, "text": c.text, "status": status, "evidence": evidence, "configs": configs})
    return out


def summarise(values: Values) -> Dict[str, Dict[str, Dict[str, Any]]]:
    table: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for model, ms in values.items():
        for metric, v in ms.items():
            table.setdefault(model, {})[metric] = {"mean": mean(v), "std": stdev(v) if len(v) > 1 else None,
                                                   "n": len(v)}
    return table


# ---- the driver --------------------------------------------------------------------------------------------
def run_protocol(protocol: str, *, models: Optional[Sequence[str]] = None, dataset: str = "digits",
                 budget: str = "cpu", seed: int = 0, seeds: Optional[int] = None,
                 data_root: Optional[str] = None, download: bool = False, results: Optional[Path] = None,
                 out: Optional[Path] = None, overrides: Optional[Dict[str, str]] = None, resume: bool = False,
                 fresh: bool = False, progress: bool = True, debug: bool = False,
                 executor: Optional[ExecutorOptions] = None) -> ProtocolResult:
    """Run (or complete) one protocol; see the module docstring.  Torch's thread count is restored after.
    The process keeps the memory it frees (``common.memory.keep_freed_memory``: fewer page faults per step).
    ``executor`` runs the cells through submitit or Ray (:mod:`protocols.executors`); default: here."""
    import torch
    keep_freed_memory()
    threads = torch.get_num_threads()
    try:
        return _run_protocol(protocol, models=models, dataset=dataset, budget=budget, seed=seed, seeds=seeds,
                             data_root=data_root, download=download, results=results, out=out,
                             overrides=overrides, resume=resume, fresh=fresh, progress=progress, debug=debug,
                             executor=executor.check() if executor is not None else None)
    finally:
        torch.set_num_threads(threads)


def _run_protocol(protocol: str, *, models, dataset, budget, seed, seeds, data_root, download, results, out,
                  overrides, resume, fresh, progress, debug, executor) -> ProtocolResult:
    p = PROTOCOLS.get(protocol)
    n_seeds = seeds if seeds is not None else p.seeds
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {n_seeds}")
    if seed < 0:
        raise ConfigError(f"--seed must be >= 0, not {seed}")
    world = int(os.environ.get("WORLD_SIZE", "1"))
    cfgs, _ = plan(protocol, models, range(seed, seed + n_seeds), dataset=dataset, budget=budget,
                   overrides=overrides, world=world)
    devices = {c.train.device for c in cfgs}
    if len(devices) > 1:
        raise ConfigError(f"the cells of one run must share train.device, got {', '.join(sorted(devices))}")
    preflight_extractors(p, cfgs)
    device = D.init_from_env(cfgs[0].train.device)
    ds = load_dataset(dataset, data_root=data_root, download=download)
    preflight_data(p, ds, cfgs)
    store = ResultsStore(results or default_results())
    out_dir = usable_dir(Path(out or default_out()), "--out")
    ctx = Context(dataset=ds, budget=budget, store=store, out_dir=out_dir, device=device, resume=resume,
                  cache_dir=usable_dir(default_cache(out_dir), "cache"), progress=progress)
    cells = [Cell(p, c.model, c.seed, c, ds.name, ds.content_hash, extractor_identity(ctx, p, c)) for c in cfgs]
    claim_cfgs = claim_configs(p, {c.model for c in cfgs}, seed, dataset=dataset, budget=budget,
                               overrides=overrides, world=world)     # before training: nothing fails after it
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
                             n_snapshots=max(c.eval.snapshots for c in cfgs))
    table = summarise(stored_values(store, {m: groups[m] for m in configs}))
    D.barrier()
    return ProtocolResult(p.name, ds.name, budget, outcomes, claims, table, configs, store.path)
