"""Training throughput of every Table 1 model through the one trainer (images/s), measured in one run.

Two settings: the digits default at the ``cpu`` budget (8x8, 1 channel, the cpu preset widths) and
the paper's CIFAR-10 setting (3x32x32, ``paper`` preset widths, batch 64) on synthetic uint8 data.
Also the channels_last / NCHW ratio for the GAN at 32x32.  Prints a table and writes JSON.

    python benchmarks/bench_training.py [--models gan,vae] [--steps 3] [--paper-steps 1] [--out FILE]
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import torch

from models import DataSpec, build_model
from protocols.config import resolve, set_value
from protocols.trainer import Trainer

TABLE1 = ("gan", "vae", "vade", "avgde", "avade")


def throughput(name: str, spec: DataSpec, budget: str, steps: int, warmup: int = 1,
               channels_last: bool = False) -> dict:
    cfg = resolve(name, budget=budget)
    for k, v in {"train.steps": warmup + steps, "train.batch_size": 64, "train.val_every": 0,
                 "train.ckpt_every": 0, "train.sample_every": -1, "train.progress": False,
                 "train.channels_last": channels_last}.items():
        set_value(cfg, k, v)
    torch.manual_seed(0)
    model = build_model(name, cfg.model_cfg, spec)
    x = torch.randint(0, spec.levels, (512, *spec.shape), dtype=torch.uint8)
    y = torch.randint(0, max(spec.n_classes, 1), (512,))
    with tempfile.TemporaryDirectory() as d:
        tr = Trainer(model, x, cfg, Path(d), train_y=y)
        tr.fit(stop_at=warmup)
        t0 = time.perf_counter()
        tr.fit(stop_at=warmup + steps)
        dt = time.perf_counter() - t0
    params = sum(p.numel() for p in model.parameters())
    return {"model": name, "setting": f"{spec.channels}x{spec.resolution}x{spec.resolution} {budget}",
            "params": params, "s_per_step": dt / steps, "img_per_s": 64 * steps / dt,
            "channels_last": channels_last}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default=",".join(TABLE1))
    ap.add_argument("--steps", type=int, default=20, help="timed steps at the cpu budget")
    ap.add_argument("--paper-steps", type=int, default=1, help="timed steps at 32x32 paper widths (0 = skip)")
    ap.add_argument("--out", default="benchmarks/results_training.json")
    args = ap.parse_args()
    names = [m for m in args.models.split(",") if m]
    rows = [throughput(m, DataSpec(1, 8, 17, 10), "cpu", args.steps) for m in names]
    if args.paper_steps > 0:
        cifar = DataSpec(3, 32, 256, 10)
        rows += [throughput(m, cifar, "paper", args.paper_steps) for m in names]
        if "gan" in names:
            rows.append(throughput("gan", cifar, "paper", args.paper_steps, channels_last=True))
    print(f"torch threads: {torch.get_num_threads()}")
    print(f"{'model':<8}{'setting':<22}{'params':>12}{'s/step':>10}{'img/s':>10}  layout")
    for r in rows:
        print(f"{r['model']:<8}{r['setting']:<22}{r['params']:>12,}{r['s_per_step']:>10.3f}{r['img_per_s']:>10.1f}  "
              f"{'NHWC' if r['channels_last'] else 'NCHW'}")
    nchw = [r for r in rows if r["model"] == "gan" and "32x32" in r["setting"]]
    if len(nchw) == 2:
        print(f"channels_last / NCHW speed ratio (gan, 32x32): {nchw[1]['img_per_s'] / nchw[0]['img_per_s']:.2f}")
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
