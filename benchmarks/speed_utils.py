"""Shared helpers of the speed benchmarks: threads, an fp32 matmul peak, FLOP counting, interleaved timing.

Timings on a shared CPU are noisy, so every figure a benchmark reports is a *ratio* of quantities measured
in the same process, interleaved round by round (reference, candidate, reference, ...), as the median over
rounds: a training step's achieved FLOP/s over the fp32 matmul peak of the same round, AV-ADE's samples/s
over the GAN's, and so on.

FLOP counting.  ``torch.utils.flop_counter.FlopCounterMode`` attributes FLOPs to modules through a
``ModuleTracker`` whose backward hooks raise inside ``torch.autograd.grad`` ("A leaf node was passed to
_will_engine_execute_node ...") -- the gradient penalty calls it.  :class:`FlopCounter` is the same count
without the attribution: a ``TorchDispatchMode`` that applies ``torch.utils.flop_counter.flop_registry``
(the formulas FlopCounterMode uses) to every op, so the penalty's forward, its ``autograd.grad`` and the
double backward are all counted.  On a step without ``autograd.grad`` it gives exactly FlopCounterMode's
total (tested in ``test_bench_training.py``).  Only matmul/conv-type ops have formulas (elementwise ops,
the optimiser and weight-norm reductions count 0), so the count is the step's "model FLOPs".
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Callable, Dict, Iterable, List, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry


def load_line() -> str:
    """The 1/5/15-minute load averages and the CPU count, to print beside every measurement."""
    try:
        a, b, c = os.getloadavg()
    except OSError:  # pragma: no cover - not Unix
        return "load n/a"
    return f"load {a:.2f} {b:.2f} {c:.2f} on {os.cpu_count()} CPUs"


class FlopCounter(TorchDispatchMode):
    """Total FLOPs of the registered (matmul / conv / bmm ...) ops run inside the context, backward included,
    and the wall time spent inside those ops themselves (``seconds``; CPU ops are synchronous, and the mode's
    own Python overhead falls outside the timed calls), so that ``flops / seconds`` is the rate the FLOP-carrying
    kernels reach and the rest of a step is everything else (elementwise work, normalisation, the optimiser)."""

    def __init__(self):
        super().__init__()
        self.flops = 0
        self.seconds = 0.0
        self.by_op: Dict[str, int] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        formula = flop_registry.get(func._overloadpacket)
        if formula is None:
            return func(*args, **kwargs)
        t = time.perf_counter()
        out = func(*args, **kwargs)
        self.seconds += time.perf_counter() - t
        n = int(formula(*args, **kwargs, out_val=out))
        self.flops += n
        key = str(func._overloadpacket).split(".")[-1]
        self.by_op[key] = self.by_op.get(key, 0) + n
        return out


def matmul_peak(size: int = 1536, repeats: int = 3, dtype: torch.dtype = torch.float32) -> float:
    """Achieved FLOP/s of a square matmul (best of ``repeats``), the reference 'peak' of a round."""
    a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - t)
    return 2 * size ** 3 / best


def timed(fn: Callable[[], object], repeats: int = 1) -> float:
    """Seconds per call of ``fn`` over ``repeats`` calls."""
    t = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - t) / repeats


def interleaved(fns: Dict[str, Callable[[], float]], rounds: int) -> Dict[str, List[float]]:
    """Run every ``fn`` (each returns a measurement) once per round, in order, for ``rounds`` rounds."""
    out: Dict[str, List[float]] = {k: [] for k in fns}
    for _ in range(rounds):
        for k, fn in fns.items():
            out[k].append(float(fn()))
    return out


def median_ratio(num: Iterable[float], den: Iterable[float]) -> float:
    """Median over rounds of num[i] / den[i] (both measured in round i)."""
    return statistics.median(a / b for a, b in zip(num, den))


def median(xs: Iterable[float]) -> float:
    return statistics.median(list(xs))


# ---- training steps through the one trainer ------------------------------------------------------------
#: (budget, dataset, data spec arguments) of the two settings of the speed issue
SETTINGS = {"1x32 cpu": ("cpu", "fashion-mnist", (1, 32, 256, 10)),
            "3x32 paper": ("paper", "cifar10", (3, 32, 256, 10))}
TABLE1 = ("gan", "vae", "vade", "avgde", "avade")


def build_trainer(name: str, setting: str, run_dir, channels_last: bool = False, batch_size: int = 64,
                  overrides: Optional[dict] = None, seed: int = 0):
    """A Trainer of model ``name`` at a setting of :data:`SETTINGS` on random uint8 data (content is
    irrelevant to speed), ready for :func:`train_step`."""
    from models import DataSpec, build_model
    from protocols.config import resolve
    from protocols.trainer import Trainer

    budget, dataset, spec = SETTINGS[setting]
    spec = DataSpec(*spec)
    sets = {"train.batch_size": batch_size, "train.val_every": 0, "train.ckpt_every": 0, "train.sample_every": 0,
            "train.progress": False, "train.channels_last": channels_last, "train.steps": 10 ** 6,
            "train.threads": torch.get_num_threads(), **(overrides or {})}
    cfg = resolve(name, budget=budget, dataset=dataset, overrides={k: str(v) for k, v in sets.items()}, seed=seed)
    torch.manual_seed(seed)
    model = build_model(name, cfg.model_cfg, spec)
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, spec.levels, (4 * batch_size, *spec.shape), generator=g, dtype=torch.uint8)
    y = torch.randint(0, spec.n_classes, (4 * batch_size,), generator=g)
    tr = Trainer(model, x, cfg, run_dir, train_y=y)
    tr.model.train()
    return tr


def train_step(tr) -> Dict[str, float]:
    """One step of the trainer's main stage: every phase (zero_grad, losses, backward, clip, optimiser step)."""
    stage = tr._stage_at(tr.step)
    batch = tr._batch(tr.step)
    logged = {}
    for phase in stage.phases:
        logged.update(tr._phase(phase, batch))
    tr.step += 1
    return logged


def step_flops(tr) -> FlopCounter:
    """FLOPs of one trainer step (all phases, forward + backward + gradient penalty)."""
    with FlopCounter() as fc:
        train_step(tr)
    return fc
