"""The contract every generative model of the suite fulfils.

A model is an ``nn.Module`` that *exposes* its training signal; it never owns a
training loop (the one trainer is ``protocols.trainer``):

* ``stages(steps)``: the training schedule as a list of :class:`Stage` (name, the
  phases run at each step, number of steps).  Most models have one stage; the GAN
  adds an ``inference`` stage that fits an inference network around the frozen
  generator (Section 5 of the paper).
* ``phase_parameters(phase)``: the parameters the optimiser of that phase updates.
* ``losses(phase, batch)``: a dict of named scalar tensors.  The trainer
  back-propagates ``out["loss"]`` and logs every entry; any non-finite entry stops
  training with a message naming it and the step.
* ``sample(n, labels=None)``: images in [0, 1] (float, N x C x H x W), in the
  dequantised space described below.
* ``nll(x, k=1)``: an upper bound on -log p(u) in nats per image, where
  ``u = dequantize(x)`` uses *fresh* noise: the ELBO for k = 1 and the
  importance-weighted bound for k > 1.  ``None`` when the model has no density yet
  (a GAN before its inference network is trained).
* ``reconstruct(x)`` where there is an encoder.

Spaces.  The data are uint8 tensors with ``levels`` intensity levels (0..levels-1).
``dequantize`` maps them to ``u = (x + U[0,1)) / levels`` in [0, 1).  A density on
u gives bits per dimension ``bpd = (nll + D ln L) / (D ln 2)`` (:func:`bits_per_dim`);
a model uniform on [0, 1)^D has nll = 0 and scores exactly log2(L).  Samples are
returned in u-space and turned back into levels by :func:`quantize`.
"""
from __future__ import annotations

import dataclasses
import inspect
import math
import re
from dataclasses import dataclass
from typing import Dict, Iterable, List, Optional, Tuple

import torch
from torch import nn

from common.registry import Registry


@dataclass(frozen=True)
class DataSpec:
    """What a model needs to know about the data: shape, levels, classes."""

    channels: int
    resolution: int          # square images, power of two (28x28 data is padded to 32)
    levels: int = 256        # intensity levels of the uint8 data (digits: 17)
    n_classes: int = 0       # 0 = unlabelled

    @property
    def dims(self) -> int:
        return self.channels * self.resolution * self.resolution

    @property
    def shape(self) -> Tuple[int, int, int]:
        return (self.channels, self.resolution, self.resolution)


@dataclass(frozen=True)
class Stage:
    name: str
    phases: Tuple[str, ...]
    steps: int
    #: the stage fits a bound to a fixed model (the GAN's inference network): with ``train.plateau_patience`` set,
    #: the trainer stops it once its validation bound stops improving, ``steps`` being its most
    plateau: bool = False


@dataclass
class Batch:
    """A training batch: uint8 images N x C x H x W and int64 labels (or None)."""

    x: torch.Tensor
    y: Optional[torch.Tensor] = None

    def to(self, device) -> "Batch":
        return Batch(self.x.to(device, non_blocking=True),
                     None if self.y is None else self.y.to(device, non_blocking=True))


def dequantize(x: torch.Tensor, levels: int) -> torch.Tensor:
    """uint8 levels -> u in [0, 1) with fresh uniform noise (one bin = 1/levels)."""
    x = x.float()
    return (x + torch.rand_like(x)) / levels


def quantize(u: torch.Tensor, levels: int) -> torch.Tensor:
    """u-space images (any float) -> uint8 levels in 0..levels-1 (floor of u*L, clamped)."""
    return torch.clamp(torch.floor(u * levels), 0, levels - 1).to(torch.uint8)


def to_unit(x: torch.Tensor, levels: int) -> torch.Tensor:
    """uint8 levels -> display/feature floats in [0, 1]: x / (L - 1)."""
    return x.float() / (levels - 1)


def bits_per_dim(nll_nats: torch.Tensor | float, dims: int, levels: int):
    """Upper bound on bits/dim of the discrete data from a continuous NLL on u in [0,1)^D."""
    return (nll_nats + dims * math.log(levels)) / (dims * math.log(2.0))


class GenerativeModel(nn.Module):
    """Base class: a model exposes phases, losses, a sampler and (maybe) a likelihood bound."""

    #: phases run at each step of the main stage, in order (e.g. ("disc", "gen"))
    phases: Tuple[str, ...] = ("main",)
    #: whether ``sample`` accepts class labels (class-conditional models)
    conditional: bool = False

    def __init__(self, cfg, data: DataSpec):
        super().__init__()
        self.cfg = cfg
        self.data = data

    # ---- training -------------------------------------------------------------
    @classmethod
    def stage_plan(cls, cfg, steps: int) -> List[Stage]:
        """The training schedule of a model with config ``cfg`` for ``steps`` main steps, known before the
        model is built (the dry run shows it).  Every stage is bounded by ``steps``: a quick try with a
        small ``train.steps`` never runs a long extra stage (e.g. the GAN's inference network)."""
        return [Stage("main", tuple(cls.phases), int(steps))]

    @classmethod
    def inactive_keys(cls, cfg) -> Tuple[str, ...]:
        """Config fields that have no effect under ``cfg`` (e.g. the discriminator's width of a model without
        one): an override of such a key does not reach this model."""
        return ()

    def stages(self, steps: int) -> List[Stage]:
        return [dataclasses.replace(s, steps=min(int(s.steps), int(steps)))
                for s in type(self).stage_plan(self.cfg, steps)]

    def phase_parameters(self, phase: str) -> Iterable[nn.Parameter]:
        if phase != "main":
            raise KeyError(f"{type(self).__name__} has no phase {phase!r}")
        return [p for p in self.parameters() if p.requires_grad]

    def losses(self, phase: str, batch: Batch) -> Dict[str, torch.Tensor]:
        raise NotImplementedError

    # ---- evaluation -----------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        raise NotImplementedError

    def nll(self, x: torch.Tensor, k: int = 1) -> Optional[torch.Tensor]:
        """An upper bound on -log p(u) in nats per image (shape N; ``u = dequantize(x)``, fresh noise): the ELBO for
        k = 1, the importance-weighted bound for k > 1.  None: no density (yet)."""
        return None

    def reconstruct(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError(f"{type(self).__name__} has no encoder")

    def kl(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """KL(q(z|x) || p(z)) in nats per image (uint8 ``x``) for a model with an encoder; None without one."""
        return None

    @property
    def has_encoder(self) -> bool:
        return type(self).reconstruct is not GenerativeModel.reconstruct

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device


#: name -> model class; meta: ``config`` (dataclass type), ``defaults`` ({field: value}: what the name means,
#: e.g. ``gan-rd`` = the GAN with ``disc="rd"``; the paper's sizes), ``presets`` (how big and how long it trains
#: at each budget below the paper's, :mod:`models.presets`), ``base`` (the registered name whose presets it
#: extends), ``description`` (one line), ``paper`` (table/row it reproduces).
MODELS: Registry[type] = Registry("model")

_BUDGET_KEY = re.compile(r"^[a-z][a-z0-9_-]*(@[0-9]+)?$")


def register_model(name: str, *, config: type, defaults: Dict[str, object] | None = None,
                   presets: Dict[str, Dict[str, object]] | None = None, base: str | None = None,
                   description: str = "", paper: str = ""):
    """Register a model class under ``name``: a new model is one file with this call (and its import)."""
    defaults, presets = dict(defaults or {}), {b: dict(v) for b, v in (presets or {}).items()}
    names = {f.name for f in dataclasses.fields(config)}
    unknown = set(defaults) - names
    if unknown:
        raise ValueError(f"model {name!r}: unknown {config.__name__} fields in defaults: {sorted(unknown)}")
    for budget, keys in presets.items():
        if not _BUDGET_KEY.match(budget):
            raise ValueError(f"model {name!r}: preset key {budget!r} is not a budget or budget@resolution")
        bad = [k for k in keys if k not in names and k.partition(".")[0] not in ("train", "eval")]
        if bad:
            raise ValueError(f"model {name!r}: presets[{budget!r}] has keys that are neither {config.__name__} "
                             f"fields nor train./eval. keys: {sorted(bad)}")
    if base is not None and base not in MODELS:
        raise ValueError(f"model {name!r}: base {base!r} is not registered (register it first)")
    register = MODELS.register(name, config=config, defaults=defaults, presets=presets, base=base,
                               description=description, paper=paper)

    def checked(cls: type) -> type:
        problems = interface_problems(cls)
        if problems:
            raise TypeError(f"model {name!r}: " + "; ".join(problems) + " (README 'Add a model', models/template.py)")
        return register(cls)

    return checked


#: (method, call it must accept, what the pipeline passes): the calls the trainer and the evaluation make
_CALLS = (("__init__", ("cfg", "data"), {}, "(cfg, data)"),
          ("phase_parameters", ("main",), {}, "(phase)"),
          ("losses", ("main", None), {}, "(phase, batch)"),
          ("sample", (2,), {"labels": None}, "(n, labels=None): the pipeline calls sample(k, labels=...); an "
                                             "unconditional model ignores labels"),
          ("nll", (None, 1), {}, "(x, k=1): metrics call nll(x, k)"))


def interface_problems(cls: type) -> List[str]:
    """What a class lacks to be a registered model (checked by :func:`register_model` before it registers it): a
    :class:`GenerativeModel` subclass with ``losses`` and ``sample`` of its own, the call signatures the trainer and
    the evaluation use, phases as a tuple of names, and an ``nll`` whose docstring states its units (nats per
    image).  The ``loss`` key of ``losses`` is checked at the first training step (``protocols.trainer``), the shape
    of ``nll`` where BPD is computed (``metrics.bpd``)."""
    if not (isinstance(cls, type) and issubclass(cls, GenerativeModel)):
        return [f"{cls!r} is not a subclass of models.GenerativeModel"]
    out = [f"{cls.__name__} does not define {m}" for m in ("losses", "sample")
           if getattr(cls, m) is getattr(GenerativeModel, m)]
    for method, args, kwargs, need in _CALLS:
        try:
            inspect.signature(getattr(cls, method)).bind(None, *args, **kwargs)
        except TypeError:
            out.append(f"{cls.__name__}.{method} must accept {need}")
    phases = getattr(cls, "phases", None)
    if not (isinstance(phases, tuple) and phases and all(isinstance(p, str) and p for p in phases)):
        out.append(f"{cls.__name__}.phases must be a non-empty tuple of phase names, e.g. ('main',) or "
                   f"('disc', 'gen'), not {phases!r}")
    owner = next(c for c in cls.__mro__ if "nll" in vars(c))
    doc = getattr(vars(owner)["nll"], "__doc__", None) or ""      # its own docstring, not an inherited one
    if owner is not GenerativeModel and "nats" not in doc:
        out.append(f"{owner.__name__}.nll must say its units in its docstring: an upper bound on -log p(u) in nats "
                   f"per image, one value per image (bits per dimension are derived from it)")
    return out


def preset_chain(name: str) -> List[str]:
    """``name`` and the registered names whose presets it extends, most general first."""
    out: List[str] = []
    while name and name not in out:
        out.append(name)
        name = MODELS.meta(name).get("base") or ""
    return out[::-1]


def default_config(name: str):
    """The config of a registered model name at its own defaults (the paper's sizes)."""
    meta = MODELS.meta(name)
    return meta["config"](**meta["defaults"])


def build_model(name: str, cfg, data: DataSpec) -> GenerativeModel:
    return MODELS.get(name)(cfg if cfg is not None else default_config(name), data)
