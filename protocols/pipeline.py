"""One cell of a protocol: its identity, training with the one trainer, sampling, store rows.

Data flow (docs/design.md): dataset -> trainer -> checkpoint -> evaluator (samples -> features once -> every
metric) -> results store.  Rank 0 writes; under torchrun, training is data-parallel and sampling /
held-out BPD are sharded over ranks.

Identity (common/store.py): a cell is (protocol, dataset and its content hash, model, resolved config
hash, extractor identity, seed).  :class:`Cell` computes its ``group_key`` (without the seed) and
``cell_key`` before anything is trained, so a cell is skipped only when exactly that cell is stored.
"""
from __future__ import annotations

import hashlib
import json
import math
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from models import build_model
from models.base import GenerativeModel

from . import distributed as D
from .base import Context, Protocol
from .config import RunConfig, save_config
from common.store import Measurement
from .trainer import CheckpointError, Trainer, TrainResult, load_checkpoint


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", s).strip("_") or "x"


def _digest(obj: Any, n: int = 16) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:n]


_FILE_HASHES: Dict[Tuple[str, int, float], str] = {}


def file_sha256(path: str) -> str:
    """Content hash of a (weights) file, remembered per (path, size, mtime) within the process."""
    p = Path(path).expanduser()
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime)
    if key not in _FILE_HASHES:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _FILE_HASHES[key] = h.hexdigest()
    return _FILE_HASHES[key]


def extractor_identity(ctx: Context, p: Protocol, cfg: RunConfig) -> Dict[str, Any]:
    """What determines the features behind the cell's sample metrics (known before training): the Inception
    file's content, or the domain / self-supervised / Table 8 network's data, recipe and thread count; plus the
    content of any DINOv2 / CLIP file whose space the cell also measures (``eval.dinov2_weights`` /
    ``eval.clip_weights``)."""
    return {**_primary_identity(ctx, p, cfg), **_pretrained_identity(cfg)}


def _primary_identity(ctx: Context, p: Protocol, cfg: RunConfig) -> Dict[str, Any]:
    from metrics.features import Recipe
    from metrics.gan_train_test import GAN_RECIPE
    from .evaluate import extractor_name
    name = p.extractor or extractor_name(ctx, cfg)
    if name == "inception":
        from metrics.features.inception import resolve_weights
        return {"extractor": "inception", "weights_sha256": file_sha256(resolve_weights(
            cfg.eval.inception_weights or None))}
    recipe = GAN_RECIPE if name == "classifier" else Recipe()
    ident = {"extractor": name, "dataset": ctx.dataset.content_hash, "recipe": recipe.key(),
             "threads": cfg.train.threads if cfg.train.device == "cpu" else "cuda"}
    if name == "classifier":
        ident["seeds"] = cfg.eval.gan_seeds
    return ident


def _pretrained_identity(cfg: RunConfig) -> Dict[str, Any]:
    """{} unless a DINOv2 / CLIP file is named (so that every existing cell keeps its identity)."""
    from metrics.features import weights as W
    out = {}
    for kind, path in (("dinov2", cfg.eval.dinov2_weights), ("clip", cfg.eval.clip_weights)):
        if path:
            out[f"{kind}_sha256"] = file_sha256(W.resolve(kind, path))
    return out


@dataclass
class Cell:
    """One (model, seed) of a protocol run, resolved and identified before any work."""

    protocol: Protocol
    model: str
    seed: int
    cfg: RunConfig
    dataset: str
    content_hash: str
    extractor: Dict[str, Any]
    sources: Dict[str, str] = field(default_factory=dict)

    @property
    def extractor_id(self) -> str:
        return _digest(self.extractor) if self.extractor else ""

    @property
    def group_key(self) -> str:
        return _digest({"protocol": self.protocol.name, "dataset": self.dataset, "content": self.content_hash,
                        "model": self.model, "config": self.cfg.hash(), "extractor": self.extractor_id}, 24)

    @property
    def cell_key(self) -> str:
        return _digest({"group": self.group_key, "seed": self.seed}, 24)

    @property
    def run_id(self) -> str:
        return f"{self.protocol.name}:{self.dataset}:{self.cfg.budget}:{self.model}:s{self.seed}:{self.cfg.hash()}"

    def run_dir(self, out_dir: Path) -> Path:
        return (Path(out_dir) / safe_name(self.dataset) / safe_name(self.protocol.name) / safe_name(self.model)
                / f"seed{self.seed}-{self.cfg.hash()}")


def train(ctx: Context, cfg: RunConfig, run_dir: Path, snapshot_hook=None
          ) -> Tuple[GenerativeModel, TrainResult, Path]:
    """Train (or resume) and return the model loaded from the selected checkpoint; ``snapshot_hook(trainer)``
    evaluates the snapshots of ``eval.snapshots`` (see :mod:`protocols.trainer`)."""
    ds = ctx.dataset
    torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)  # initial weights depend on the cell's seed only, not on earlier cells
    model = build_model(cfg.model, cfg.model_cfg, ds.spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    if D.is_main():
        save_config(cfg, run_dir / "config.json")
    trainer = Trainer(model, ds.train_x, cfg, run_dir, train_y=ds.train_y, val_x=ds.val_x, device=ctx.device,
                      snapshot_hook=snapshot_hook)
    if not ctx.resume and D.is_main():
        _start_over(ctx, trainer, run_dir)
    D.barrier()
    cfg.train.progress = cfg.train.progress and ctx.progress
    result = trainer.fit(resume=ctx.resume)
    if result.resumed_from >= 0:
        ctx.log(f"continued from the checkpoint at step {result.resumed_from} of {run_dir}")
    chosen = result.best if (cfg.eval.select == "val_bpd" and result.best is not None) else result.last
    model.load_state_dict(load_checkpoint(chosen, map_location=ctx.device)["model"])
    model.eval()
    return model, result, chosen


def _start_over(ctx: Context, trainer: Trainer, run_dir: Path) -> None:
    """Without --resume a cell trains from scratch: an old (or corrupt) checkpoint is set aside, not read."""
    if trainer.last_path.exists():
        try:
            step = load_checkpoint(trainer.last_path).get("step", "?")
            ctx.log(f"note: {run_dir} held a checkpoint at step {step}; starting over (pass --resume to continue)")
        except CheckpointError:
            ctx.log(f"note: {trainer.last_path} is unreadable; starting over")
    for name in ("last.pt", "best.pt", "stats.jsonl", "metrics.json", "snapshots.json", "plateau.json"):
        (run_dir / name).unlink(missing_ok=True)
    shutil.rmtree(run_dir / "samples", ignore_errors=True)


def checkpoint_label(result: TrainResult, chosen: Path) -> str:
    """Which checkpoint a cell evaluated, for the store and the page: 'last@N' or 'best-val@...'."""
    if result.best is not None and Path(chosen) == Path(result.best):
        return f"best val_bpd ({result.best_val_bpd:.4f})" if result.best_val_bpd is not None else "best val_bpd"
    return f"last (step {result.step})"


@torch.no_grad()
def sample_images(model: GenerativeModel, n: int, batch: int, labels: Optional[torch.Tensor] = None
                  ) -> torch.Tensor:
    """``n`` samples in u-space (float, CPU), drawn in batches and sharded over ranks."""
    world, rank = D.world_size(), D.rank()
    per = math.ceil(n / world)
    mine = []
    lab = None if labels is None else labels[rank * per:(rank + 1) * per]
    for i in range(0, per, batch):
        k = min(batch, per - i)
        lb = None if lab is None else lab[i:i + k].to(model.device)
        if lb is not None and len(lb) < k:  # pad the last rank's share
            lb = torch.cat([lb, lb[: k - len(lb)]])
        mine.append(model.sample(k, labels=lb).float().cpu())
    out = torch.cat(mine)
    if world > 1:
        out = D.all_gather_cat(out.to(model.device)).cpu()
    return out[:n]


def rows(ctx: Context, cell: Cell, values: List[Dict[str, Any]], *, snapshot: int = 0,
         at: Optional[Dict[str, float]] = None) -> List[Measurement]:
    """Store rows for one cell from plain value dicts {"metric", "value", "extractor", "n", "extra"}; ``snapshot``
    (0 = the final evaluation) and ``at`` = {"step", "images", "train_seconds"} say where along training."""
    at = at or {}
    return [Measurement(run_id=cell.run_id, model=cell.model, protocol=cell.protocol.name, dataset=cell.dataset,
                        budget=cell.cfg.budget, seed=cell.seed, metric=v["metric"], value=float(v["value"]),
                        extractor=v.get("extractor", ""), n_samples=int(v.get("n", 0)), config_hash=cell.cfg.hash(),
                        code_version=ctx.version, extra=v.get("extra", {}), cell_key=cell.cell_key,
                        group_key=cell.group_key, extractor_id=cell.extractor_id if v.get("extractor") else "",
                        snapshot=snapshot, at_step=int(at.get("step", -1)), images_seen=int(at.get("images", -1)),
                        train_seconds=float(at.get("train_seconds", -1.0)))
            for v in values]


def snapshot_rows(ctx: Context, cell: Cell, result: TrainResult) -> List[Measurement]:
    """The store rows of every snapshot the trainer recorded (``snapshots.json``)."""
    out: List[Measurement] = []
    for rec in result.snapshots:
        out += rows(ctx, cell, rec["values"], snapshot=int(rec["snapshot"]), at=rec)
    return out
