"""The Python API that ``python -m protocols.run`` is a thin shell over."""
from __future__ import annotations

import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from statistics import mean, stdev
from typing import Any, Dict, List, Optional, Sequence


from . import distributed as D
from .base import PROTOCOLS, Context, Protocol
from .claims import Values
from .config import BUDGETS, ConfigError, resolve
from .datasets import load_dataset
from .store import ResultsStore


@dataclass
class CellOutcome:
    model: str
    seed: int
    status: str                  # done | skipped (already stored) | failed
    values: Dict[str, float] = field(default_factory=dict)
    error: str = ""


@dataclass
class ProtocolResult:
    protocol: str
    dataset: str
    budget: str
    cells: List[CellOutcome]
    claims: List[dict]
    table: Dict[str, Dict[str, Dict[str, Any]]]    # model -> metric -> {mean, std, n, extractor}
    leaderboard: Optional[Path] = None


def default_results() -> Path:
    return Path(os.environ.get("AVADE_RESULTS", "results/results.sqlite"))


def default_site() -> Path:
    return Path(os.environ.get("AVADE_SITE", "leaderboard/site"))


def default_out() -> Path:
    return Path(os.environ.get("AVADE_RUNS", "runs"))


def plan(protocol: str, models: Optional[Sequence[str]] = None, seeds: Sequence[int] = (0,)) -> List[tuple]:
    p = PROTOCOLS.get(protocol)
    names = [p.resolve_model(m) for m in (models or p.models)]
    return [(m, s) for m in names for s in seeds]


def stored_values(store: ResultsStore, protocol: str, dataset: str, budget: str) -> Values:
    vals: Values = {}
    for r in store.measurements(protocol=protocol, dataset=dataset, budget=budget):
        vals.setdefault(r["model"], {}).setdefault(r["metric"], []).append(r["value"])
    return vals


def evaluate_claims(p: Protocol, store: ResultsStore, dataset: str, budget: str, extractor: str) -> List[dict]:
    values = stored_values(store, p.name, dataset, budget)
    out = []
    for c in p.claims:
        status, evidence = c.check(values)
        if D.is_main():
            store.add_claim(protocol=p.name, dataset=dataset, budget=budget, claim_id=c.id, text=c.text,
                            status=status, evidence=evidence, extractor=extractor)
        out.append({"id": c.id, "text": c.text, "status": status, "evidence": evidence})
    return out


def summarise(values: Values) -> Dict[str, Dict[str, Dict[str, Any]]]:
    table: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for model, ms in values.items():
        for metric, v in ms.items():
            table.setdefault(model, {})[metric] = {"mean": mean(v), "std": stdev(v) if len(v) > 1 else None,
                                                   "n": len(v)}
    return table


def preflight(cells, p: Protocol, dataset: str, budget: str, overrides: Optional[Dict[str, str]]) -> None:
    """Resolve every cell's config (bad names and overrides fail here) and fail before any training when
    evaluation would fail at the end (missing or unreadable Inception weights): the network is loaded once
    here, which costs seconds, not the hours of a paper run."""
    import metrics
    over = overrides or {}
    if p.trains_models:
        evals = [resolve(m, dataset=dataset, budget=budget, seed=s, protocol=p.name, overrides=overrides,
                         model_defaults=p.model_defaults.get(m)).eval for m, s in cells]
        needs = [(e.extractor, e.inception_weights or None) for e in evals]
    else:
        needs = [(over.get("eval.extractor") or BUDGETS[budget].get("eval.extractor", "domain"),
                  over.get("eval.inception_weights") or None)]
    if p.extractor is not None:  # the protocol fixes its own (e.g. Table 8's classifier)
        return
    for extractor, weights in sorted(set(needs), key=str):
        if extractor == "inception":
            metrics.load_extractor("inception", levels=256, inception_weights=weights)


def run_protocol(protocol: str, *, models: Optional[Sequence[str]] = None, dataset: str = "digits",
                 budget: str = "cpu", seed: int = 0, seeds: Optional[int] = None,
                 data_root: Optional[str] = None, download: bool = False, results: Optional[Path] = None,
                 out: Optional[Path] = None, overrides: Optional[Dict[str, str]] = None, resume: bool = False,
                 progress: bool = True, build_leaderboard: bool = True, debug: bool = False,
                 site: Optional[Path] = None) -> ProtocolResult:
    p = PROTOCOLS.get(protocol)
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; valid budgets: {', '.join(BUDGETS)}")
    n_seeds = seeds if seeds is not None else p.seeds
    if n_seeds < 1:
        raise ConfigError(f"--seeds must be at least 1, not {n_seeds}")
    cells = plan(protocol, models, range(seed, seed + n_seeds))
    # every name and override is resolved (and checked) here, before any data is loaded or trained
    preflight(cells, p, dataset, budget, overrides)
    device = D.init_from_env(overrides.get("train.device", "auto") if overrides else "auto")
    ds = load_dataset(dataset, data_root=data_root, download=download)
    if p.needs_labels and ds.train_y is None:
        raise ConfigError(f"protocol {p.name} needs class labels, and dataset {ds.name} has none")
    store = ResultsStore(results or default_results())
    out_dir = Path(out or default_out())
    ctx = Context(dataset=ds, budget=budget, store=store, out_dir=out_dir, device=device,
                  overrides=dict(overrides or {}), resume=resume, cache_dir=out_dir / "cache", progress=progress)
    outcomes: List[CellOutcome] = []
    for model, s in cells:
        if store.has_cell(protocol=p.name, dataset=ds.name, budget=budget, model=model, seed=s, metrics=p.metrics):
            ctx.log(f"[{p.name}] {model} seed {s}: already in the store, skipped")
            outcomes.append(CellOutcome(model, s, "skipped"))
            continue
        ctx.log(f"[{p.name}] {model} seed {s}: training and evaluating on {ds.name} ({budget} budget)")
        try:
            ms = p.cell(p, ctx, model, s)
        except (ConfigError, KeyboardInterrupt):
            raise
        except Exception as e:  # one failed cell never loses the finished ones
            if debug:
                traceback.print_exc()
            msg = f"{type(e).__name__}: {e}".splitlines()[0]
            ctx.log(f"[{p.name}] {model} seed {s}: FAILED ({msg}); other cells continue")
            outcomes.append(CellOutcome(model, s, "failed", error=msg))
            continue
        if D.is_main():
            store.add(ms)
        outcomes.append(CellOutcome(model, s, "done", {m.metric: m.value for m in ms}))
    extractor = p.extractor or (overrides or {}).get("eval.extractor") or BUDGETS[budget].get("eval.extractor",
                                                                                               "domain")
    claims = evaluate_claims(p, store, ds.name, budget, extractor)
    table = summarise(stored_values(store, p.name, ds.name, budget))
    page = None
    if build_leaderboard and D.is_main():
        from leaderboard.build import build
        try:
            page = build(store.path, Path(site or default_site()))
        except Exception as e:  # noqa: BLE001  results are stored; the page can be rebuilt later
            print(f"warning: leaderboard not rebuilt ({type(e).__name__}: {e}); results are in {store.path}; "
                  f"fix and run python -m leaderboard.build", flush=True)
    D.barrier()
    return ProtocolResult(p.name, ds.name, budget, outcomes, claims, table, page)
