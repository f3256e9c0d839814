"""The template of a new model (README "Add a model"): copy this file, rename it, import it in models/zoo.py.

What it is: independent pixels, p(x) = prod_i Cat(x_i; softmax(theta_i)), one learned distribution over the
``levels`` intensities of every pixel and channel.  It is the best a model that ignores every dependency between
pixels can do, so it is also a floor for BPD.  It is registered (``template``) and trained and evaluated by the
tests like every registered model (tests/test_every_model.py), so this file cannot drift from the interface.

The contract (models/base.py; ``register_model`` checks the signatures when the class is registered):

1. a config dataclass: every field typed, with a default (the defaults are the ``paper`` budget's sizes);
2. ``__init__(cfg, data)``: build from the config and the :class:`DataSpec` (channels, resolution, levels,
   n_classes);
3. ``phases`` (the phases of one training step, in order), ``phase_parameters(phase)`` (what that phase's
   optimiser updates) and ``losses(phase, batch)`` -> a dict of named scalar tensors; the trainer
   back-propagates ``out["loss"]`` and logs every entry;
4. ``sample(n, labels=None)`` -> float images N x C x H x W in [0, 1] (u-space: ``quantize`` turns them into
   levels); the pipeline passes ``labels`` only to class-conditional models (``conditional = True``), which draw
   random ones when None; an unconditional model may ignore them;
5. ``nll(x, k=1)`` -> an upper bound on -log p(u) in **nats per image** (shape N), u = dequantize(x) (uint8 x);
   None while the model has no density.  BPD = (nll + D ln L) / (D ln 2) is computed from it;
6. ``register_model(name, config=..., presets=...)`` decorating the class: the presets say how it is sized and
   trained at each budget below the paper's (plain keys: config fields; ``train.*`` / ``eval.*``: trainer and
   evaluation keys; models/presets.py).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import nn

from .base import Batch, DataSpec, GenerativeModel, bits_per_dim, register_model


@dataclass
class TemplateConfig:
    temperature: float = 1.0     # sampling temperature of the per-pixel softmax (1 = the model's own distribution)


@register_model("template", config=TemplateConfig,
                presets={"smoke": {"train.steps": 4}, "cpu": {"train.steps": 300}},
                description="independent pixels, one categorical per pixel: the template of a new model "
                            "(models/template.py)")
class TemplateModel(GenerativeModel):
    """Independent per-pixel categoricals over the intensity levels; one phase, ``main``."""

    phases = ("main",)

    def __init__(self, cfg: TemplateConfig, data: DataSpec):
        super().__init__(cfg, data)
        self.logits = nn.Parameter(torch.zeros(*data.shape, data.levels))     # C x H x W x L

    def phase_parameters(self, phase: str):
        if phase != "main":
            raise KeyError(f"TemplateModel has no phase {phase!r}; its only phase is 'main'")
        return [self.logits]

    def _log_p(self, x: torch.Tensor) -> torch.Tensor:
        """log P(x) of uint8 images (nats per image, exact)."""
        logp = torch.log_softmax(self.logits, dim=-1).expand(x.shape[0], *self.logits.shape)
        return logp.gather(-1, x.long().unsqueeze(-1)).flatten(1).sum(1)

    def losses(self, phase: str, batch: Batch) -> Dict[str, torch.Tensor]:
        nll = self.nll(batch.x.to(self.logits.device)).mean()
        d = self.data
        return {"loss": nll / d.dims, "nll": nll.detach(), "bpd": bits_per_dim(nll.detach(), d.dims, d.levels)}

    def nll(self, x: torch.Tensor, k: int = 1) -> Optional[torch.Tensor]:
        """-log p(u) in nats per image, exact: p(u) = L^D P(x) inside x's bin, so -log p(u) = -log P(x) - D ln L
        (``k`` changes nothing)."""
        return -self._log_p(x.to(self.logits.device)) - self.data.dims * math.log(self.data.levels)

    @torch.no_grad()
    def sample(self, n: int, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """n images, each pixel drawn from its categorical, returned at the centres of their bins (unconditional:
        ``labels`` is ignored)."""
        probs = torch.softmax(self.logits / self.cfg.temperature, dim=-1).reshape(-1, self.data.levels)
        k = torch.multinomial(probs, n, replacement=True).T.reshape(n, *self.data.shape)
        return (k.float() + 0.5) / self.data.levels
