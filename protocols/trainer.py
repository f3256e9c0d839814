"""The one trainer (the paper's Algorithm 1, Appendix H), driving every registered model.

A model exposes ``stages(steps)`` (each a list of phases run once per step), the parameters of
each phase and ``losses(phase, batch)``; this loop owns everything else: one Adamax optimiser
per phase (lr 2e-3, betas 0.9/0.999 by default), the data order, gradient clipping, the tqdm
bar with losses and images/s, ``stats.jsonl``, sample grids, validation-BPD checkpoint
selection, atomic checkpoints with optimiser and RNG state, exact resume, and stopping on a
non-finite loss.  Data-parallel: batches are sharded by rank and gradients averaged
(``protocols.distributed``); only rank 0 writes.

Resume is exact on CPU: the batch drawn at a step is a pure function of (seed, step, rank),
and the torch RNG state (dequantisation noise, latent draws) is saved with every checkpoint.

Snapshots (``eval.snapshots``): at evenly spaced steps of the main stage the trainer writes a checkpoint, then
calls ``snapshot_hook(trainer)`` with the (averaged) model in eval mode and the training RNG set aside, and
appends what it returns to ``snapshots.json`` (atomically) with the step, the training images seen and the
seconds spent in training steps (``train_seconds``: evaluations and checkpoints excluded; kept in the
checkpoint, so it survives a resume).  A run killed after a snapshot's checkpoint but before its record
evaluates that snapshot again on resume; records past the checkpoint's step are dropped.

A stage marked ``plateau`` (the GAN's inference stage) has its validation bound checked every
``train.plateau_every`` steps (the curve goes to ``plateau.json``); with ``train.plateau_patience`` > 0 the
stage stops after that many checks without an improvement of ``train.plateau_tol``.
"""
from __future__ import annotations

import json
import math
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional

import torch
from torch import nn

from common.io import atomic_write
from common.progress import progress_bar
from models.base import Batch, GenerativeModel, Stage, bits_per_dim

from . import distributed as D
from .config import RunConfig, parse_phase_lr, snapshot_steps


class NonFiniteLossError(RuntimeError):
    """A loss was NaN or infinite; nothing of that step was applied or stored."""


class CheckpointError(RuntimeError):
    """A checkpoint is unreadable or belongs to another configuration."""


# ---------------------------------------------------------------------------------------------
class EpochSampler:
    """Deterministic shuffled batches: the indices of step ``s`` depend only on (seed, s, rank)."""

    def __init__(self, n: int, batch_size: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.batch_size, self.seed, self.rank, self.world = n, batch_size, seed, rank, world
        self.per_epoch = (n // world) // batch_size
        if self.per_epoch == 0:
            raise ValueError(f"batch size {batch_size} x {world} process(es) exceeds the {n} training images: "
                             f"lower train.batch_size")
        self._epoch, self._perm = -1, None

    def indices(self, step: int) -> torch.Tensor:
        epoch, k = divmod(step, self.per_epoch)
        if epoch != self._epoch:
            g = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
            self._perm = torch.randperm(self.n, generator=g)[self.rank::self.world]
            self._epoch = epoch
        return self._perm[k * self.batch_size:(k + 1) * self.batch_size]


@dataclass
class TrainResult:
    run_dir: Path
    last: Path
    best: Optional[Path]
    step: int
    best_val_bpd: Optional[float] = None
    history: List[dict] = field(default_factory=list)
    snapshots: List[dict] = field(default_factory=list)    # the records of snapshots.json
    plateau: Dict[str, dict] = field(default_factory=dict)  # stage -> {"curve": [[step, bpd]], "stopped_at", ...}
    train_seconds: float = 0.0
    images_seen: int = 0             # training images of the main stage (a later inference stage fits a bound)
    resumed_from: int = -1           # the checkpoint's step this fit continued from (-1: from scratch)


def phase_lr(phase: str, tc) -> float:
    """The learning rate of a phase: its entry in ``train.phase_lr`` when there is one, else ``train.lr``."""
    return parse_phase_lr(tc.phase_lr).get(phase, tc.lr)


def make_optimizer(name: str, params, tc, phase: str = "") -> torch.optim.Optimizer:
    """One optimiser per phase: Adamax (the paper, Appendix C) or Adam, with the config's lr and betas;
    with ``train.scalar_lr`` set, the phase's 0-dim parameters form a second group at that rate."""
    cls = {"adamax": torch.optim.Adamax, "adam": torch.optim.Adam}[name]
    params, lr = list(params), phase_lr(phase, tc)
    groups = [{"params": params}]
    if tc.scalar_lr > 0 and any(p.dim() == 0 for p in params):
        groups = [{"params": [p for p in params if p.dim() > 0]},
                  {"params": [p for p in params if p.dim() == 0], "lr": tc.scalar_lr}]
    return cls([g for g in groups if g["params"]], lr=lr, betas=(tc.beta1, tc.beta2))


def atomic_save(obj, path: Path) -> None:
    atomic_write(path, lambda f: torch.save(obj, f))


def load_checkpoint(path: Path, map_location="cpu") -> dict:
    try:
        ck = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # truncated, not a zip, wrong pickle...
        raise CheckpointError(f"checkpoint {path} is corrupt or unreadable ({type(e).__name__}); delete it to "
                              f"restart that run, or point --runs elsewhere") from None
    if not isinstance(ck, dict) or "model" not in ck or "step" not in ck:
        raise CheckpointError(f"checkpoint {path} is not an avade-bench checkpoint (no model/step entries)")
    return ck


def _rng_state() -> dict:
    st = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        st["cuda"] = torch.cuda.get_rng_state_all()
    return st


def _set_rng_state(st: dict) -> None:
    torch.set_rng_state(st["torch"])
    if "cuda" in st and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(st["cuda"])


# ---------------------------------------------------------------------------------------------
def _check_losses(model, phase: str, out) -> None:
    """The contract of ``losses`` (models/base.py): a dict of named tensors with the key 'loss', the one trained."""
    if not isinstance(out, dict) or "loss" not in out:
        got = sorted(out) if isinstance(out, dict) else type(out).__name__
        raise TypeError(f"{type(model).__name__}.losses({phase!r}, batch) must return a dict of named tensors with "
                        f"the key 'loss' (the one back-propagated), got {got}")


class Trainer:
    def __init__(self, model: GenerativeModel, train_x: torch.Tensor, cfg: RunConfig, run_dir: Path, *,
                 train_y: Optional[torch.Tensor] = None, val_x: Optional[torch.Tensor] = None,
                 sampler=None, device: Optional[torch.device] = None,
                 snapshot_hook: Optional[Callable[["Trainer"], List[Dict[str, Any]]]] = None):
        self.cfg, self.tc = cfg, cfg.train
        self.snapshot_hook = snapshot_hook
        self.run_dir = Path(run_dir)
        self.device = device or torch.device("cpu")
        self.model = model.to(self.device)
        if self.tc.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.train_x, self.train_y, self.val_x = train_x, train_y, val_x
        self.sampler = sampler or EpochSampler(len(train_x), self.tc.batch_size, cfg.seed, D.rank(),
                                               D.world_size())
        self.stages: List[Stage] = [s for s in model.stages(self.tc.steps) if s.steps > 0]
        self.total = sum(s.steps for s in self.stages)
        self.optims: Dict[str, torch.optim.Optimizer] = {}
        self._params: Dict[str, List[nn.Parameter]] = {}
        for st in self.stages:
            for ph in st.phases:
                if ph not in self.optims:
                    params = [p for p in model.phase_parameters(ph)]
                    self._params[ph] = params
                    self.optims[ph] = make_optimizer(self.tc.optimizer, params, self.tc, ph)
        self.step = 0
        self.ema: Optional[Dict[str, torch.Tensor]] = None     # train.ema: the averaged weights
        if self.tc.ema > 0:
            self.ema = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.best_val: Optional[float] = None
        self.history: List[dict] = []
        main = self.stages[0].steps if self.stages else 0
        self.snapshot_at = snapshot_steps(main, cfg.eval.snapshots) if snapshot_hook is not None else []
        self.snapshots: List[dict] = []
        self.plateau: Dict[str, dict] = {}
        self.train_seconds = 0.0

    # ---- checkpoints ------------------------------------------------------------------
    @property
    def last_path(self) -> Path:
        return self.run_dir / "last.pt"

    @property
    def best_path(self) -> Path:
        return self.run_dir / "best.pt"

    def state(self) -> dict:
        """``model`` is what is evaluated: the averaged weights under ``train.ema``, whose last iterate (what
        training resumes from) is then ``model_train``."""
        st = {"step": self.step, "model": self.ema if self.ema is not None else self.model.state_dict(),
              "optim": {k: o.state_dict() for k, o in self.optims.items()}, "rng": _rng_state(),
              "config_hash": self.cfg.hash(), "model_name": self.cfg.model,
              "best_val": -1.0 if self.best_val is None else self.best_val, "train_seconds": self.train_seconds,
              "plateau": json.dumps(self.plateau)}
        if self.ema is not None:
            st["model_train"] = self.model.state_dict()
        return st

    def save(self, path: Optional[Path] = None) -> None:
        if D.is_main():
            atomic_save(self.state(), path or self.last_path)
        D.barrier()

    def resume(self) -> bool:
        """Load ``last.pt`` if present; returns whether training continues from it."""
        if not self.last_path.exists():
            return False
        ck = load_checkpoint(self.last_path, map_location=self.device)
        if ck.get("config_hash") != self.cfg.hash():
            raise CheckpointError(f"{self.last_path} was written by another configuration "
                                  f"({ck.get('config_hash')} != {self.cfg.hash()}); resume with the same "
                                  f"settings, or use a fresh --runs")
        self.model.load_state_dict(ck.get("model_train", ck["model"]))
        if self.ema is not None:
            self.ema = {k: v.to(self.device) for k, v in ck["model"].items()}
        for k, o in self.optims.items():
            o.load_state_dict(ck["optim"][k])
        _set_rng_state(ck["rng"])
        self.step = int(ck["step"])
        self.best_val = None if ck.get("best_val", -1.0) < 0 else float(ck["best_val"])
        self.train_seconds = float(ck.get("train_seconds", 0.0))
        self.plateau = json.loads(ck.get("plateau", "{}"))
        return True

    # ---- the loop -----------------------------------------------------------------------
    def _stage_at(self, step: int) -> Stage:
        for st in self.stages:
            if step < st.steps:
                return st
            step -= st.steps
        return self.stages[-1]

    def _batch(self, step: int) -> Batch:
        idx = self.sampler.indices(step)
        x = self.train_x[idx]
        if self.tc.channels_last and x.dim() == 4:
            x = x.contiguous(memory_format=torch.channels_last)
        y = None if self.train_y is None else self.train_y[idx]
        return Batch(x, y).to(self.device)

    def _phase(self, phase: str, batch: Batch) -> Dict[str, float]:
        self.model.zero_grad(set_to_none=True)
        with torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.tc.autocast == "bf16"):
            out = self.model.losses(phase, batch)
        _check_losses(self.model, phase, out)
        logged = {}
        for name, v in out.items():
            val = float(v.detach().float().mean())
            if not math.isfinite(val):
                raise NonFiniteLossError(self._non_finite(name, phase, val))
            logged[f"{phase}/{name}"] = val
        out["loss"].backward()
        params = self._params[phase]
        D.all_reduce_grads(params)
        if self.tc.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_(params, self.tc.grad_clip)
        self.optims[phase].step()
        return logged

    @torch.no_grad()
    def _update_ema(self) -> None:
        """ema <- d ema + (1 - d) weights, d = min(train.ema, (1 + t) / (10 + t)); the first step copies (after
        data-dependent inits). Buffers (batch-norm statistics) are averaged alike; integer ones copied."""
        t = self.step - 1
        d = 0.0 if t == 0 else min(self.tc.ema, (1 + t) / (10 + t))
        for k, v in self.model.state_dict().items():
            e = self.ema[k]
            if e.is_floating_point():
                e.lerp_(v.detach(), 1.0 - d)
            else:
                e.copy_(v)

    @contextmanager
    def averaged(self):
        """The model holds its averaged weights inside the block (no-op without ``train.ema``)."""
        if self.ema is None:
            yield self.model
            return
        current = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.model.load_state_dict(self.ema)
        try:
            yield self.model
        finally:
            self.model.load_state_dict(current)

    def _non_finite(self, name: str, phase: str, val: float) -> str:
        saved = f"the last checkpoint, {self.last_path}, is kept" if self.last_path.exists() else \
            "no checkpoint had been written yet"
        return (f"loss '{name}' of phase '{phase}' is {val} at step {self.step} ({self.cfg.model}); nothing of this "
                f"step was applied and nothing was stored; {saved}. Retry with a lower train.lr or with "
                f"train.grad_clip set: that is a new configuration, trained from its first step")

    def fit(self, resume: bool = False, stop_at: Optional[int] = None) -> TrainResult:
        """Train to the end (or to ``stop_at`` steps, which simulates an interruption)."""
        torch.manual_seed(self.cfg.seed * 7919 + D.rank())
        self.run_dir.mkdir(parents=True, exist_ok=True)
        resumed = resume and self.resume()
        resumed_from = self.step if resumed else -1
        if not resumed:
            D.broadcast_module(self.model)
        self._load_snapshots()
        if self.step in self.snapshot_at and not any(r["step"] == self.step for r in self.snapshots):
            self._snapshot()   # killed between a snapshot's checkpoint and its record
        end = self.total if stop_at is None else min(stop_at, self.total)
        bar = self._bar(end)
        window: Dict[str, List[float]] = {}
        t0, seen = time.perf_counter(), 0
        self.model.train()
        while self.step < end:
            t_step = time.perf_counter()
            stage = self._stage_at(self.step)
            batch = self._batch(self.step)
            for phase in stage.phases:
                for _ in range(self.tc.disc_steps if phase == "disc" else 1):
                    for k, v in self._phase(phase, batch).items():
                        window.setdefault(k, []).append(v)
            self.step += 1
            if self.step == 1:  # data-dependent inits (Glow's ActNorm) ran on each rank's own batch
                D.broadcast_module(self.model)
            if self.ema is not None:
                self._update_ema()
            self.train_seconds += time.perf_counter() - t_step
            seen += batch.x.shape[0] * D.world_size()
            if bar is not None:
                bar.update(1)
            if self.step % max(self.tc.log_every, 1) == 0 or self.step == end:
                rate = seen / max(time.perf_counter() - t0, 1e-9)
                self._log(stage, window, rate, bar)
                window, t0, seen = {}, time.perf_counter(), 0
            self._periodic(end)
            if self.step in self.snapshot_at:
                self.save()          # the snapshot's checkpoint first: resume never trains past an evaluated point
                self._snapshot()
            if stage.plateau:
                self._plateau_check(stage)
        if bar is not None:
            bar.close()
        self.save()
        if self.step >= self.total and self.tc.sample_every >= 0:
            self.save_samples(self.run_dir / "samples" / f"step_{self.step:07d}.png")
        best = self.best_path if self.best_path.exists() else None
        return TrainResult(self.run_dir, self.last_path, best, self.step, self.best_val, self.history,
                           list(self.snapshots), dict(self.plateau), self.train_seconds,
                           self.images_seen(min(self.step, self.stages[0].steps if self.stages else 0)),
                           resumed_from)

    # ---- snapshots and plateaus ---------------------------------------------------------------------
    def images_seen(self, step: Optional[int] = None) -> int:
        """Training images drawn by all processes up to ``step`` (default: now)."""
        return (self.step if step is None else step) * self.tc.batch_size * D.world_size()

    @property
    def snapshots_path(self) -> Path:
        return self.run_dir / "snapshots.json"

    def _load_snapshots(self) -> None:
        self.snapshots = []
        if self.snapshot_at and self.snapshots_path.exists():
            try:
                records = json.loads(self.snapshots_path.read_text())
            except json.JSONDecodeError:
                records = []       # written atomically, so only a foreign file; its snapshots are evaluated anew
            self.snapshots = [r for r in records if isinstance(r, dict) and r.get("step", 1 << 62) <= self.step]

    def _snapshot(self) -> None:
        """Evaluate the hook on the current weights (averaged under ``train.ema``) and record it."""
        t0 = time.perf_counter()
        with torch.random.fork_rng(devices=[self.device.index or 0] if self.device.type == "cuda" else []):
            self.model.eval()
            with self.averaged():
                values = self.snapshot_hook(self)
            self.model.train()
        rec = {"snapshot": self.snapshot_at.index(self.step) + 1, "of": len(self.snapshot_at), "step": self.step,
               "images": self.images_seen(), "train_seconds": round(self.train_seconds, 3),
               "eval_seconds": round(time.perf_counter() - t0, 3), "values": values}
        self.snapshots = [r for r in self.snapshots if r["step"] != self.step] + [rec]
        if D.is_main():
            atomic_write(self.snapshots_path, json.dumps(self.snapshots, indent=1, default=float))

    def _stage_start(self, stage: Stage) -> int:
        start = 0
        for st in self.stages:
            if st is stage:
                return start
            start += st.steps
        return start

    def _plateau_check(self, stage: Stage) -> None:
        """Every ``plateau_every`` steps of a plateau stage: its validation bound; stop the stage on a plateau."""
        start = self._stage_start(stage)
        local = self.step - start
        if local % self.tc.plateau_every != 0 or local >= stage.steps:
            return
        bpd = self._val_bpd()
        if bpd is None:
            return
        st = self.plateau.setdefault(stage.name, {"curve": [], "best": None, "since": 0, "stopped_at": None,
                                                  "budget": stage.steps})
        st["curve"].append([local, bpd])
        if st["best"] is None or bpd < st["best"] - self.tc.plateau_tol:
            st["best"], st["since"] = bpd, 0
        else:
            st["since"] += 1
        if self.tc.plateau_patience > 0 and st["since"] >= self.tc.plateau_patience:
            st["stopped_at"] = local
            self.step = start + stage.steps      # the rest of the stage is skipped (the loop ends or moves on)
        if D.is_main():
            atomic_write(self.run_dir / "plateau.json", json.dumps(self.plateau, indent=1))

    def _periodic(self, end: int) -> None:
        s, tc = self.step, self.tc
        if tc.val_every > 0 and s % tc.val_every == 0:
            self.validate()
        if tc.ckpt_every > 0 and s % tc.ckpt_every == 0 and s < end:
            self.save()
        if tc.sample_every > 0 and s % tc.sample_every == 0 and s < self.total:
            self.save_samples(self.run_dir / "samples" / f"step_{s:07d}.png")

    def _bar(self, end: int):
        if not (self.tc.progress and D.is_main()):
            return None
        return progress_bar(end, f"{self.cfg.model}", unit="step", initial=self.step, leave=False)

    def _log(self, stage: Stage, window: Dict[str, List[float]], rate: float, bar) -> None:
        means = {k: sum(v) / len(v) for k, v in window.items()}
        rec = {"step": self.step, "stage": stage.name, "img_per_s": round(rate, 2), **means}
        self.history.append(rec)
        if not D.is_main():
            return
        with open(self.run_dir / "stats.jsonl", "a") as f:
            f.write(json.dumps(rec) + "\n")
        if bar is not None:
            short = {k.replace("/loss", ""): f"{v:.3g}" for k, v in list(means.items())[:6]}
            bar.set_postfix({**short, "img/s": f"{rate:.0f}"}, refresh=False)

    # ---- evaluation hooks ---------------------------------------------------------------------
    @torch.no_grad()
    def _val_bpd(self) -> Optional[float]:
        """Single-sample bound on the first ``val_images`` validation images (fixed noise), or None."""
        if self.val_x is None or len(self.val_x) == 0:
            return None
        rng = torch.get_rng_state()  # validation must not perturb the training RNG stream
        torch.manual_seed(12345)
        self.model.eval()
        x = self.val_x[: self.tc.val_images].to(self.device)
        with self.averaged():
            nll = self.model.nll(x)
        self.model.train()
        torch.set_rng_state(rng)
        if nll is None:
            return None
        spec = self.model.data
        return float(bits_per_dim(nll.mean(), spec.dims, spec.levels))

    def validate(self) -> Optional[float]:
        """Validation BPD (single-sample bound); keeps ``best.pt`` at the best value."""
        bpd = self._val_bpd()
        if bpd is None:
            return None
        rec = {"step": self.step, "val_bpd": bpd}
        self.history.append(rec)
        if D.is_main():
            with open(self.run_dir / "stats.jsonl", "a") as f:
                f.write(json.dumps(rec) + "\n")
        if math.isfinite(bpd) and (self.best_val is None or bpd < self.best_val):
            self.best_val = bpd
            self.save(self.best_path)
        return bpd

    @torch.no_grad()
    def save_samples(self, path: Path, n: int = 64) -> None:
        if not D.is_main():
            return
        from torchvision.utils import save_image
        rng = torch.get_rng_state()
        torch.manual_seed(2024)
        self.model.eval()
        labels = None
        if self.model.conditional and self.model.data.n_classes:
            labels = torch.arange(n, device=self.device) % self.model.data.n_classes
        with self.averaged():
            u = self.model.sample(n, labels=labels).float().clamp(0, 1).cpu()
        self.model.train()
        torch.set_rng_state(rng)
        path.parent.mkdir(parents=True, exist_ok=True)
        save_image(u, path, nrow=int(math.sqrt(n)), padding=1)
