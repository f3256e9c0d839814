"""Tiny but honest GenerativeModels for testing the trainer, store and CLI plumbing.

``ToyGaussian``: a factorised Gaussian density on u (exact nll, sampler), one phase.
``ToyAdversarial``: the same density plus a linear critic, phases ("disc", "gen"), to
exercise multi-phase steps, per-phase optimisers and RNG use in both phases.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from models.base import DataSpec, GenerativeModel, dequantize


@dataclass
class ToyConfig:
    hidden: int = 8


class ToyGaussian(GenerativeModel):
    def __init__(self, cfg: ToyConfig, data: DataSpec):
        super().__init__(cfg, data)
        self.mu = nn.Parameter(torch.full(data.shape, 0.5))
        self.log_sigma = nn.Parameter(torch.zeros(data.shape))
        self.mix = nn.Linear(data.dims, cfg.hidden)  # unused by nll; gives the optimiser more state

    def _nll_u(self, u):
        z = (u - self.mu) * torch.exp(-self.log_sigma)
        return (0.5 * z ** 2 + self.log_sigma + 0.5 * math.log(2 * math.pi)).flatten(1).sum(1)

    def losses(self, phase, batch):
        u = dequantize(batch.x, self.data.levels)
        nll = self._nll_u(u) + 1e-3 * self.mix(u.flatten(1)).pow(2).sum(1)
        return {"loss": nll.mean() / self.data.dims, "nll": nll.mean()}

    def nll(self, x, k=1):
        """-log p(u) in nats per image (exact; k changes nothing)."""
        return self._nll_u(dequantize(x, self.data.levels))

    @torch.no_grad()
    def sample(self, n, labels=None):
        eps = torch.randn((n, *self.data.shape), device=self.mu.device)
        return (self.mu + eps * self.log_sigma.exp()).clamp(0, 1)


class ToyAdversarial(ToyGaussian):
    phases = ("disc", "gen")

    def __init__(self, cfg: ToyConfig, data: DataSpec):
        super().__init__(cfg, data)
        self.critic = nn.Linear(data.dims, 1)

    def phase_parameters(self, phase):
        if phase == "disc":
            return list(self.critic.parameters())
        if phase == "gen":
            return [self.mu, self.log_sigma, *self.mix.parameters()]
        raise KeyError(phase)

    def losses(self, phase, batch):
        n = batch.x.shape[0]
        fake = self.mu + torch.randn((n, *self.data.shape)) * self.log_sigma.exp()
        real = dequantize(batch.x, self.data.levels)
        if phase == "disc":
            a_r, a_f = self.critic(real.flatten(1)), self.critic(fake.detach().flatten(1))
            loss = nn.functional.softplus(-a_r).mean() + nn.functional.softplus(a_f).mean()
            return {"loss": loss}
        out = super().losses("main", batch)
        out["adv"] = -self.critic(fake.flatten(1)).mean()
        out["loss"] = out["loss"] + 0.1 * out["adv"]
        return out
