"""Cell functions: what one (model, seed) of a protocol does.

``standard_cell``: train with the one trainer, then held-out BPD (ELBO and, when asked, the
importance-weighted bound), samples -> features once -> every sample metric, sample grid,
reconstructions and PRD curve written into the run directory for the leaderboard.
``gan_train_test_cell``: Table 8 on a class-conditional model.  ``sensitivity_cell``: Table 7 on
random real subsets (no model).
"""
from __future__ import annotations

import json
from typing import Any, Dict, List

import torch

from metrics import keys as K
from models.base import quantize

from . import distributed as D
from .base import Context, Protocol
from .config import resolve
from .evaluate import gan_train_test, heldout_bpd, sample_metrics, save_figures, subset_sensitivity
from .pipeline import measurements, rows, run_dir_for, run_id_for, sample_images, train
from .store import Measurement


def _start(p: Protocol, ctx: Context, model: str, seed: int):
    cfg = resolve(model, dataset=ctx.dataset.name, budget=ctx.budget, seed=seed, protocol=p.name,
                  overrides=ctx.overrides, model_defaults=p.model_defaults.get(model))
    run_dir, run_id = run_dir_for(ctx, cfg), run_id_for(ctx, cfg)
    if D.is_main():
        ctx.store.start_run(run_id, model=model, protocol=p.name, dataset=ctx.dataset.name, budget=ctx.budget,
                            seed=seed, run_dir=str(run_dir.resolve()), config=cfg.to_dict(),
                            config_hash=cfg.hash(), code_version=ctx.version)
    return cfg, run_dir, run_id


def _guarded(fn):
    """Mark the run failed in the store when the cell raises (finished cells are untouched)."""
    def wrapper(p: Protocol, ctx: Context, model: str, seed: int) -> List[Measurement]:
        box: Dict[str, Any] = {}
        try:
            return fn(p, ctx, model, seed, box)
        except BaseException:
            if "run_id" in box and D.is_main():
                ctx.store.finish_run(box["run_id"], status="failed")
            raise
    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


@_guarded
def standard_cell(p: Protocol, ctx: Context, model: str, seed: int, box) -> List[Measurement]:
    """Train, then BPD + every sample metric the protocol records."""
    cfg, run_dir, run_id = _start(p, ctx, model, seed)
    box["run_id"] = run_id
    net, result, ckpt = train(ctx, cfg, run_dir)
    values: List[Dict[str, Any]] = []
    values += heldout_bpd(ctx, cfg, net)
    wanted = set(p.metrics) - {K.BPD, K.BPD_IW}
    if wanted:
        torch.manual_seed(cfg.seed + 10_000)
        fake_u = sample_images(net, cfg.eval.n_samples, cfg.eval.batch_size)
        if D.is_main():
            fake = quantize(fake_u, ctx.dataset.levels)
            values += sample_metrics(ctx, cfg, fake, run_dir, wanted)
            save_figures(ctx, net, fake, run_dir)
    if D.is_main():
        (run_dir / "metrics.json").write_text(json.dumps(
            {"checkpoint": str(ckpt), "step": result.step, "best_val_bpd": result.best_val_bpd,
             "values": values}, indent=2, default=float))
        ctx.store.finish_run(run_id)
    return measurements(ctx, cfg, run_id, values)


@_guarded
def gan_train_test_cell(p: Protocol, ctx: Context, model: str, seed: int, box) -> List[Measurement]:
    """Table 8: a class-conditional model; GAN-train / GAN-test beside the real-to-real baseline."""
    cfg, run_dir, run_id = _start(p, ctx, model, seed)
    box["run_id"] = run_id
    net, result, _ = train(ctx, cfg, run_dir)
    if not getattr(net, "conditional", False):
        raise ValueError(f"gan_train_test needs a class-conditional model; {model} is not (try avade-cond)")
    values = gan_train_test(ctx, cfg, net, run_dir) if D.is_main() else []
    if D.is_main():
        save_figures(ctx, net, None, run_dir)
        ctx.store.finish_run(run_id)
    return measurements(ctx, cfg, run_id, values)


@_guarded
def sensitivity_cell(p: Protocol, ctx: Context, model: str, seed: int, box) -> List[Measurement]:
    """Table 7: IS and FID of a random real subset (``model`` names the fraction) against the full set."""
    pct = int(model.split("-")[1].rstrip("pct"))
    run_id = f"{p.name}:{ctx.dataset.name}:{ctx.budget}:{model}:s{seed}"
    box["run_id"] = run_id
    if D.is_main():
        ctx.store.start_run(run_id, model=model, protocol=p.name, dataset=ctx.dataset.name, budget=ctx.budget,
                            seed=seed, config={"fraction": pct / 100}, code_version=ctx.version)
    values = subset_sensitivity(ctx, pct / 100.0, seed) if D.is_main() else []
    if D.is_main():
        ctx.store.finish_run(run_id)
    return rows(ctx, run_id, model=model, protocol=p.name, seed=seed, values=values)
