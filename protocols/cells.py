"""Cell functions: what one (model, seed) of a protocol does.

``standard_cell``: train with the one trainer, then held-out BPD (ELBO and, when asked, the
importance-weighted bound), samples -> features once -> every sample metric, sample grid,
reconstructions and PRD curve written into the run directory for the leaderboard.
``gan_train_test_cell``: Table 8 on a class-conditional model.  ``sensitivity_cell``: Table 7 on
random real subsets (no model).

A cell function returns a :class:`CellOutput` and never opens the store: the driver
(:mod:`protocols.scheduler`) commits its rows and marks the run done in one transaction, so a run killed at
any point is never 'done' without its rows.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List

import torch

from common.io import atomic_write
from metrics import keys as K
from models.base import quantize, to_unit

from . import distributed as D
from .base import Context
from .evaluate import (MEMO_KEYS, PRODUCER, bpd_gap_values, bpd_values, class_keys, convention_values,
                       gan_train_test_values, kl_values, pretrained_values,
                       sample_metrics, sampling_cost_values, save_class_gallery, save_figures, sensitivity_values,
                       snapshot_values,
                       steps_curve_values)
from .pipeline import Cell, checkpoint_label, rows, sample_images, snapshot_rows, train
from common.store import Measurement


@dataclass
class CellOutput:
    measurements: List[Measurement]
    checkpoint: str = ""


def start(ctx: Context, cell: Cell) -> Path:
    """The cell's run directory (the driver recorded the run as 'running' in the store before this)."""
    return cell.run_dir(ctx.out_dir)


def standard_cell(ctx: Context, cell: Cell) -> CellOutput:
    """Train (with the snapshots of ``eval.snapshots`` along the way), then BPD + every sample metric the
    protocol records, and FID under both sampling conventions where the model has two."""
    cfg, run_dir = cell.cfg, start(ctx, cell)
    hook = (lambda trainer: snapshot_values(ctx, cfg, trainer.model)) if cfg.eval.snapshots > 0 else None
    net, result, ckpt = train(ctx, cfg, run_dir, snapshot_hook=hook)
    values: List[Dict[str, Any]] = []
    values += [_with_plateau(v, result) for v in bpd_values(ctx, cfg, net)]
    values += kl_values(ctx, cfg, net, cfg.eval.bpd_images)
    if K.BPD_GAP in cell.protocol.extras:
        values += bpd_gap_values(ctx, cfg, net, values)
    wanted = set(cell.protocol.metrics) & set(PRODUCER)
    wanted |= (class_keys(cfg) | (set(cell.protocol.extras) & set(PRODUCER))) if wanted else set()
    if wanted:
        torch.manual_seed(cfg.seed + 10_000)
        fake_u = sample_images(net, cfg.eval.n_samples, cfg.eval.batch_size)
        if D.is_main():
            fake = quantize(fake_u, ctx.dataset.levels)
            values += sample_metrics(ctx, cfg, fake, run_dir, wanted)
            values += pretrained_values(ctx, cfg, fake, wanted)
            save_figures(ctx, net, fake, run_dir)
            save_class_gallery(ctx, cfg, fake, run_dir)
    if K.FID in wanted:
        values += convention_values(ctx, cfg, net, values)
    curve = [k for k in cell.protocol.steps_curve if k < getattr(cfg.model_cfg, "sample_steps", 0)]
    if curve:
        values += steps_curve_values(ctx, cfg, net, curve, run_dir)
    if D.is_main():
        values += sampling_cost_values(ctx, cfg, net)
    label = checkpoint_label(result, ckpt)
    if D.is_main():
        atomic_write(run_dir / "metrics.json", json.dumps(
            {"checkpoint": str(ckpt), "evaluated": label, "step": result.step, "best_val_bpd": result.best_val_bpd,
             "values": values}, indent=2, default=float))
    at = {"step": result.step, "images": result.images_seen, "train_seconds": result.train_seconds}
    return CellOutput(rows(ctx, cell, _with_checkpoint(values, label), at=at) + snapshot_rows(ctx, cell, result),
                      label)


def gan_train_test_cell(ctx: Context, cell: Cell) -> CellOutput:
    """Table 8: a class-conditional model; GAN-train / GAN-test beside the real-to-real baseline."""
    cfg, run_dir = cell.cfg, start(ctx, cell)
    net, result, ckpt = train(ctx, cfg, run_dir)     # conditional: checked up front (api.preflight_data)
    values = gan_train_test_values(ctx, cfg, net, run_dir) if D.is_main() else []
    if D.is_main():
        save_figures(ctx, net, None, run_dir)
    label = checkpoint_label(result, ckpt)
    return CellOutput(rows(ctx, cell, _with_checkpoint(values, label)), label)


def sensitivity_cell(ctx: Context, cell: Cell) -> CellOutput:
    """Table 7: IS and FID of a random real subset (the cell's name gives the fraction) against the full set."""
    pct = int(cell.model.split("-")[1].rstrip("pct"))
    start(ctx, cell)
    values = sensitivity_values(ctx, cell.cfg, pct / 100.0) if D.is_main() else []
    return CellOutput(rows(ctx, cell, values))


def floor_cell(ctx: Context, cell: Cell) -> CellOutput:
    """The real-data floor of the sample metrics: ``eval.n_samples`` real train images (a seeded draw, with
    replacement only when the split is smaller) measured exactly as a model's samples are, against the same
    test split.  No model can be expected to beat it; claims treat models inside its noise as tied."""
    cfg, run_dir = cell.cfg, start(ctx, cell)
    train_x, n = ctx.dataset.train_x, cfg.eval.n_samples
    g = torch.Generator().manual_seed(cfg.seed + 10_000)
    replace = n > len(train_x)
    idx = torch.randint(len(train_x), (n,), generator=g) if replace else torch.randperm(len(train_x), generator=g)[:n]
    values = []
    if D.is_main():
        from torchvision.utils import save_image
        run_dir.mkdir(parents=True, exist_ok=True)
        wanted = set(cell.protocol.metrics) & set(PRODUCER)
        wanted |= (class_keys(cfg) | (set(cell.protocol.extras) & set(PRODUCER) - MEMO_KEYS)) if wanted else set()
        values = sample_metrics(ctx, cfg, train_x[idx], run_dir, wanted)
        values += pretrained_values(ctx, cfg, train_x[idx], wanted, floor=True)
        save_image(to_unit(train_x[idx[:64]], ctx.dataset.levels), run_dir / "samples.png", nrow=8, padding=1)
    snaps: List[Dict[str, Any]] = []
    if D.is_main() and cfg.eval.snapshots > 0:   # the floor at a snapshot's sample count, beside every snapshot
        m = cfg.eval.snapshot_samples
        sub = idx[:m] if m <= n else torch.randint(len(train_x), (m,), generator=g)
        snaps = sample_metrics(ctx, cfg, train_x[sub], None, {K.FID, K.KID, K.RECALL} | class_keys(cfg))
    for v in values + snaps:
        v["extra"] = {**v["extra"], "floor": "real train images", "with_replacement": replace,
                      "train_images": len(train_x)}
    out = rows(ctx, cell, values)
    for i in range(1, cfg.eval.snapshots + 1 if snaps else 1):
        out += rows(ctx, cell, snaps, snapshot=i)
    return CellOutput(out, "real data")


def _with_plateau(v: Dict[str, Any], result) -> Dict[str, Any]:
    """A BPD row of a model with a plateau stage (the GAN's inference network) carries that stage's curve."""
    if not result.plateau:
        return v
    stages = {name: {"curve": st["curve"], "stopped_at": st["stopped_at"], "budget": st.get("budget")}
              for name, st in result.plateau.items()}
    return {**v, "extra": {**v["extra"], "plateau": stages}}


def _with_checkpoint(values: List[Dict[str, Any]], label: str) -> List[Dict[str, Any]]:
    return [{**v, "extra": {**v.get("extra", {}), "checkpoint": label}} for v in values]
