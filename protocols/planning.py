"""Planning: every cell of a run resolved and checked before any work (names, overrides and values, the
device, the Inception file, that the dataset suits the extractor and that every model builds on it), and the
configurations the protocol's claims compare models at."""
from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Set, Tuple

from .base import PROTOCOLS, Protocol
from .claims import FLOOR
from .config import BUDGETS, ConfigError, Override, RunConfig, as_overrides, has_key, resolve


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
                 world: int = 1, recipe: Optional[str] = None) -> RunConfig:
    return resolve(model, dataset=dataset, budget=budget, seed=seed, protocol=p.name, overrides=overrides,
                   protocol_settings=p.settings(), world=world, registered=p.trains_models and model != FLOOR,
                   recipe=recipe)


def plan(protocol: str, models: Optional[Sequence[str]] = None, seeds: Sequence[int] = (0,), *,
         dataset: str = "digits", budget: str = "cpu", overrides: Any = None,
         world: int = 1, recipe: Optional[str] = None) -> Tuple[List[RunConfig], Dict[str, List[str]]]:
    """Every cell's resolved config, and which models each override reached (an override that reaches no
    model of the run is an error).  ``overrides``: ``{key: value}`` or parsed :class:`Override` s; ``recipe``: the
    optimisation recipe (:mod:`models.recipes`; None = the budget's default)."""
    p = PROTOCOLS.get(protocol)
    if budget not in BUDGETS:
        raise ConfigError(f"unknown budget {budget!r}; valid budgets: {', '.join(BUDGETS)}")
    if not p.models:
        raise ConfigError(f"protocol {p.name} holds the trials of tuning studies; run a study with --tune N and the "
                          f"protocol whose models it tunes (e.g. --protocol ablation --tune 12)")
    names = model_names(p, models) + ([FLOOR] if p.floor else [])
    over = _scoped(p, names, as_overrides(overrides))
    cfgs = [resolve_cell(p, m, s, dataset=dataset, budget=budget, overrides=over, world=world, recipe=recipe)
            for m in names for s in seeds]
    reach = {o.text: sorted({c.model for c in cfgs if o.text in c.applied}) for o in over}
    for key, reached in reach.items():
        if not reached:
            raise ConfigError(_unreached(key, cfgs))
    return cfgs, reach


def claim_configs(p: Protocol, trained: Set[str], seed: int, *, dataset: str, budget: str,
                  overrides: Any = None, world: int = 1, recipe: Optional[str] = None) -> List[RunConfig]:
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
            out.append(resolve_cell(p, m, seed, dataset=dataset, budget=budget, overrides=unscoped, world=world,
                                    recipe=recipe))
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
    for kind in ("dinov2", "clip"):                   # the extra feature spaces (issue 36): a missing file fails now
        for weights in sorted({getattr(c.eval, f"{kind}_weights") for c in cfgs} - {""}):
            metrics.load_extractor(kind, levels=256, weights=weights)


def preflight_data(p: Protocol, ds, cfgs: List[RunConfig]) -> None:
    """Checks that need the dataset: labels, the extractor, the batch size, and each model's structure."""
    if p.needs_labels:
        plain = sorted({c.model for c in cfgs if not getattr(c.model_cfg, "conditional", False)})
        if plain:
            raise ConfigError(f"protocol {p.name} needs class-conditional models; {', '.join(plain)} "
                              f"{'is' if len(plain) == 1 else 'are'} not (models: {', '.join(p.models)})")
    if p.needs_labels and ds.train_y is None:
        raise ConfigError(f"protocol {p.name} needs class labels, and dataset {ds.name} has no labels")
    # data without labels: the domain extractor is the self-supervised one (protocols/evaluate.py extractor_name)
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
