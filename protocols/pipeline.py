"""One cell of a protocol: train a model with the one trainer, then evaluate it.

Data flow (DESIGN.md): dataset -> trainer -> checkpoint -> evaluator (samples -> features once ->
every metric) -> results store.  Rank 0 writes; under torchrun, training is data-parallel and
sampling / held-out BPD are sharded over ranks.
"""
from __future__ import annotations

import math
import re
import shutil
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from models import build_model
from models.base import GenerativeModel

from . import distributed as D
from .base import Context
from .config import RunConfig, save_config
from .store import Measurement
from .trainer import Trainer, TrainResult, load_checkpoint


def safe_name(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", s).strip("_") or "x"


def run_dir_for(ctx: Context, cfg: RunConfig) -> Path:
    return (ctx.out_dir / safe_name(ctx.dataset.name) / safe_name(cfg.protocol or "adhoc") / safe_name(cfg.model)
            / f"seed{cfg.seed}-{cfg.hash()}")


def run_id_for(ctx: Context, cfg: RunConfig) -> str:
    return f"{cfg.protocol or 'adhoc'}:{ctx.dataset.name}:{ctx.budget}:{cfg.model}:s{cfg.seed}:{cfg.hash()}"


def train(ctx: Context, cfg: RunConfig, run_dir: Path) -> Tuple[GenerativeModel, TrainResult, Path]:
    """Train (or resume) and return the model loaded from the selected checkpoint."""
    ds = ctx.dataset
    if cfg.train.threads > 0:
        torch.set_num_threads(cfg.train.threads)
    torch.manual_seed(cfg.seed)  # initial weights depend on the cell's seed only, not on earlier cells
    model = build_model(cfg.model, cfg.model_cfg, ds.spec)
    run_dir.mkdir(parents=True, exist_ok=True)
    if D.is_main():
        save_config(cfg, run_dir / "config.json")
    trainer = Trainer(model, ds.train_x, cfg, run_dir, train_y=ds.train_y, val_x=ds.val_x, device=ctx.device)
    if not ctx.resume and D.is_main():
        if trainer.last_path.exists():
            step = load_checkpoint(trainer.last_path).get("step", "?")
            ctx.log(f"note: {run_dir} held a checkpoint at step {step}; starting over (pass --resume to continue)")
        for name in ("last.pt", "best.pt", "stats.jsonl"):
            (run_dir / name).unlink(missing_ok=True)
        shutil.rmtree(run_dir / "samples", ignore_errors=True)
    D.barrier()
    cfg.train.progress = cfg.train.progress and ctx.progress
    result = trainer.fit(resume=ctx.resume)
    chosen = result.best if (cfg.eval.select == "val_bpd" and result.best is not None) else result.last
    model.load_state_dict(load_checkpoint(chosen, map_location=ctx.device)["model"])
    model.eval()
    return model, result, chosen


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


def rows(ctx: Context, run_id: str, *, model: str, protocol: str, seed: int, values: List[Dict[str, Any]],
         config_hash: str = "") -> List[Measurement]:
    """Store rows for one cell from plain value dicts {"metric", "value", "extractor", "n", "extra"}."""
    return [Measurement(run_id=run_id, model=model, protocol=protocol, dataset=ctx.dataset.name, budget=ctx.budget,
                        seed=seed, metric=v["metric"], value=float(v["value"]), extractor=v.get("extractor", ""),
                        n_samples=int(v.get("n", 0)), config_hash=config_hash, code_version=ctx.version,
                        extra=v.get("extra", {}))
            for v in values]


def measurements(ctx: Context, cfg: RunConfig, run_id: str, values: List[Dict[str, Any]]) -> List[Measurement]:
    return rows(ctx, run_id, model=cfg.model, protocol=cfg.protocol or "adhoc", seed=cfg.seed, values=values,
                config_hash=cfg.hash())
