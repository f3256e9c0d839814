"""The trials of a tuning study (:mod:`protocols.tuning`): cells of the ``tune`` protocol, trained like the
protocol's cells and measured on the **validation split**, never the test split.

:func:`validation_view` is the dataset a trial sees: the same train and validation splits, and the validation split
in the place of the test split, so that every measurement (FID's reference, held-out BPD, the snapshots, the
domain classifier's held-out accuracy) reads validation rows.  A trial records its final BPD and FID (the criteria
of a study) and the snapshots of ``eval.snapshots`` along training.

Pruning goes through the run directory, so that it works wherever the cell runs (local, submitit, Ray):

- ``prune.json``, written by the driver: ``{"study", "trial", "judged": i, "stop": bool, "decided_at": i}``.  At
  each snapshot the worker first waits (up to :data:`WAIT_S`) until the driver has judged the snapshot before,
  then stops when told to.  A pruning decision taken on snapshot ``i`` therefore stops the trial at snapshot
  ``i + 1``, before it is evaluated: within one snapshot.  A study without a pruner writes every snapshot judged
  (the worker never waits); the file also tells a later study whose trial left the run directory.
- ``trial.json``, written by the worker when the trial ends: ``{"state": complete | pruned | diverged,
  "decided_at", "stopped_at", "error"}``.  A pruned or diverged trial keeps the rows of its snapshots.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch

from common.io import atomic_write
from common.studies import TRIAL_PROTOCOL
from metrics import keys as K
from models.base import quantize

from . import distributed as D
from .base import Context, Protocol, register_protocol
from .cells import CellOutput
from .evaluate import bpd_values, sample_metrics, save_figures, snapshot_values
from .pipeline import Cell, checkpoint_label, rows, sample_images, snapshot_rows, train
from .trainer import NonFiniteLossError

PRUNE_FILE, TRIAL_FILE = "prune.json", "trial.json"
#: seconds a worker waits at a snapshot for the driver's verdict on the one before (then it goes on: the driver
#: may have been stopped; a restarted one judges what it finds)
WAIT_S = 60.0
#: the values of a trial: the criteria a study selects by
TRIAL_METRICS = (K.BPD, K.FID)


class TrialStopped(Exception):
    """The driver pruned this trial (``prune.json``); raised at the next snapshot, before it is evaluated."""

    def __init__(self, decided_at: Optional[int], stopped_at: int):
        super().__init__(f"pruned at snapshot {decided_at}, stopped at snapshot {stopped_at}")
        self.decided_at, self.stopped_at = decided_at, stopped_at


def validation_view(ds):
    """``ds`` with its validation split in the place of its test split (train and validation unchanged)."""
    from .datasets import ImageDataset
    return ImageDataset(ds.name, ds.train_x, ds.train_y, ds.val_x, ds.val_y, ds.val_x, ds.val_y, levels=ds.levels,
                        n_classes=ds.n_classes, source=f"{ds.source} (validation split as held-out split)")


def read_json(path: Path) -> Optional[Any]:
    try:
        return json.loads(Path(path).read_text()) if Path(path).is_file() else None
    except (OSError, ValueError):
        return None


def verdict(run_dir: Path, judged: int, wait_s: float = WAIT_S) -> Dict[str, Any]:
    """The driver's latest verdict, once it has judged snapshot ``judged`` (or told to stop, or ``wait_s`` passed);
    {} when the trial is not pruned (no ``prune.json``)."""
    end = time.monotonic() + wait_s
    while True:
        v = read_json(Path(run_dir) / PRUNE_FILE)
        if not isinstance(v, dict):
            return {}
        if v.get("stop") or int(v.get("judged", 0)) >= judged or time.monotonic() >= end:
            return v
        time.sleep(0.05)


def _hook(vctx: Context, cfg, run_dir: Path):
    def hook(trainer) -> List[Dict[str, Any]]:
        i = trainer.snapshot_at.index(trainer.step) + 1
        v = verdict(run_dir, i - 1)
        if v.get("stop"):
            raise TrialStopped(v.get("decided_at"), i)
        return snapshot_values(vctx, cfg, trainer.model)
    return hook


def _snapshot_rows(ctx: Context, cell: Cell, run_dir: Path) -> List:
    """The rows of the snapshots a stopped trial evaluated (its ``snapshots.json``; non-finite values left out)."""
    out = []
    for rec in read_json(run_dir / "snapshots.json") or []:
        values = [v for v in rec.get("values", []) if math.isfinite(float(v["value"]))]
        out += rows(ctx, cell, values, snapshot=int(rec["snapshot"]), at=rec)
    return out


def _ended(run_dir: Path, state: str, **info: Any) -> None:
    if D.is_main():
        atomic_write(run_dir / TRIAL_FILE, json.dumps({"state": state, **info}, default=str))


def trial_cell(ctx: Context, cell: Cell) -> CellOutput:
    """Train one trial (stopping when pruned), then its BPD and FID on the validation split."""
    cfg, run_dir = cell.cfg, cell.run_dir(ctx.out_dir)
    vctx = replace(ctx, dataset=validation_view(ctx.dataset), _extractors={})
    (run_dir / TRIAL_FILE).unlink(missing_ok=True)
    try:
        net, result, ckpt = train(vctx, cfg, run_dir, snapshot_hook=_hook(vctx, cfg, run_dir)
                                  if cfg.eval.snapshots > 0 else None)
    except TrialStopped as e:
        _ended(run_dir, "pruned", decided_at=e.decided_at, stopped_at=e.stopped_at)
        return CellOutput(_snapshot_rows(vctx, cell, run_dir), f"pruned (stopped at snapshot {e.stopped_at})")
    except NonFiniteLossError as e:
        _ended(run_dir, "diverged", error=str(e).splitlines()[0])
        return CellOutput(_snapshot_rows(vctx, cell, run_dir), "diverged")
    values = [v for v in bpd_values(vctx, cfg, net, iw=False) if v["metric"] == K.BPD]
    torch.manual_seed(cfg.seed + 10_000)
    fake = sample_images(net, cfg.eval.n_samples, cfg.eval.batch_size)
    if D.is_main():
        fake = quantize(fake, vctx.dataset.levels)
        values += sample_metrics(vctx, cfg, fake, run_dir, {K.FID})
        save_figures(vctx, net, fake, run_dir)
    bad = [v["metric"] for v in values if not math.isfinite(float(v["value"]))]
    values = [v for v in values if v["metric"] not in bad]
    _ended(run_dir, "diverged" if bad else "complete", error=f"non-finite {', '.join(bad)}" if bad else "")
    label = checkpoint_label(result, ckpt)
    at = {"step": result.step, "images": result.images_seen, "train_seconds": result.train_seconds}
    return CellOutput(rows(vctx, cell, [{**v, "extra": {**v.get("extra", {}), "split": "validation"}} for v in values],
                           at=at) + snapshot_rows(vctx, cell, result), label)


register_protocol(Protocol(
    name=TRIAL_PROTOCOL, table="tuning study", cell=trial_cell, models=(), metrics=TRIAL_METRICS,
    description="the trials of tuning studies (run them with --tune N and the protocol to tune): validation split"))
