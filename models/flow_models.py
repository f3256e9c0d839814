"""Fully invertible flows as registered models: ``realnvp``, ``glow``, ``flowgan``.

These are the MLE rows of the paper's Table 3 (Real-NVP [9], Glow [24]) and its Hybrid (L) rows
(FlowGAN(H) [16]).  Density (exact, change of variables):
``log p(u) = log N(y; 0, I) + log|det df/dl| + log|det dl/du|`` with ``l = pre(u)`` (the logit
transform of :class:`models.flows.LogitTransform` for Real-NVP / Flow-GAN, Glow's ``u - 0.5`` for
Glow) and ``y = f(l)`` of the input's shape; every factored-out dimension has the N(0, 1) prior
(Glow's learned split prior is part of f, see :mod:`models.glow`).

Loss scaling: the ``main`` phase back-propagates ``loss = mean_batch(-log p(u)) / D`` (nats per
dimension), i.e. the maximum-likelihood gradient divided by the constant D, which keeps the loss
O(1) at every resolution (TF real_nvp and chrischute also optimise a per-dimension cost).  It also
logs ``nll`` (nats per image) and ``bpd`` (:func:`models.base.bits_per_dim`).

``nll(x, k)`` is the exact -log p(u) of a fresh dequantisation u of x (k is accepted and ignored:
there is nothing to importance-sample).  Report it in ``eval()`` mode: train-mode BatchNorm makes it
batch-dependent (spec P1).  ``sample(n)`` maps N(0, I) draws (times ``temperature``) through f^{-1}
and pre^{-1} and clamps to [0, 1].

Flow-GAN (Grover, Dhar & Ermon 2018; reference ermongroup/flow-gan ``model.py``, README "Hybrid"
CIFAR command): the Real-NVP above is the generator; its generator objective is
``NLL_per_image + L_adv / like_reg`` with ``like_reg = 20`` and a WGAN critic with gradient penalty
weight 10.  Here the same weighting is divided by D (``loss = (NLL + L_adv / like_reg) / D``) to stay
in nats per dimension.  Deviations, all documented in the config: one critic step per generator step
(the reference uses 5; the suite's trainer runs one step per phase), the paper's discriminator
(:mod:`models.discriminators`) rather than DCGAN's, and the suite's Adamax optimiser.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, Optional

import torch
from torch import nn

from common.fields import opt

from .adversarial import discriminator_losses, g_loss, gradient_penalty
from .base import Batch, DataSpec, GenerativeModel, bits_per_dim, dequantize, register_model
from .discriminators import build_discriminator
from .flows import LogitTransform, RealNVP, standard_normal_logp
from .glow import Glow
from .layers import fast_inference, frozen

__all__ = ["RealNVPConfig", "GlowConfig", "FlowGANConfig", "FlowDensityModel", "RealNVPModel",
           "GlowModel", "FlowGAN", "CenterTransform"]


class CenterTransform(nn.Module):
    """Glow's pre-processing: u in [0, 1) -> u - 0.5 (logdet 0); inverse adds 0.5 back."""

    def forward(self, u):
        return u - 0.5, u.new_zeros(u.shape[0])

    def inverse(self, l):
        return l + 0.5


# ---- configs -----------------------------------------------------------------------------------
@dataclass
class RealNVPConfig:
    """Defaults: Dinh et al.'s CIFAR-10 model (8 residual blocks, 64 features, 2 scales, 4 final couplings)."""

    scales: int = opt(2, min=1)             # multi-scale levels (each non-final one halves the resolution)
    blocks: int = opt(8, min=1)             # residual blocks per s/t network
    mid: int = opt(64, min=1)               # s/t width at the first scale (doubles per scale)
    couplings: int = opt(3, min=1)          # checkerboard (and channel-wise) couplings per non-final scale
    final_couplings: int = opt(4, min=1)    # checkerboard couplings at the last scale
    bn_in_st: bool = True                   # BatchNorm inside the s/t networks (references: yes)
    alpha: float = opt(0.05, min=0, below=0.5)  # logit transform constant (TF real_nvp data_constraint 0.9)
    temperature: float = opt(1.0, above=0)  # std of the N(0, I) draws used by sample() (training always uses 1)


@dataclass
class GlowConfig:
    """Defaults: Glow's CIFAR-10 model (3 levels of 32 steps, 512 hidden channels, affine couplings)."""

    levels: int = opt(3, min=1)             # squeeze + steps [+ split] levels
    depth: int = opt(32, min=1)             # flow steps (actnorm, 1x1 conv, coupling) per level
    hidden: int = opt(512, min=1)           # coupling network width
    learned_prior: bool = True              # Glow's learned split prior (False: N(0, 1) on factored dims)
    temperature: float = opt(1.0, above=0)


@dataclass
class FlowGANConfig(RealNVPConfig):
    """Real-NVP generator + discriminator; hybrid weighting of Flow-GAN's CIFAR "Hybrid" command."""

    like_reg: float = opt(20.0, above=0)    # generator loss = NLL + L_adv / like_reg (Flow-GAN --like_reg 20)
    adv_loss: str = opt("wgan", choices=("wgan", "ce"))  # wgan: Flow-GAN's critic | ce: the paper's L_D (Sec. 3)
    gp_weight: float = opt(10.0, min=0)     # gradient-penalty weight (Flow-GAN --reg 10; the AV-ADE paper uses 100)
    disc: str = opt("simple", choices=("simple", "rd"))  # models.discriminators
    disc_width: int = opt(64, min=1)


# ---- models ------------------------------------------------------------------------------------
class FlowDensityModel(GenerativeModel):
    """A flow ``f`` after a fixed pre-processing ``pre``, with an N(0, I) base density on all of y."""

    def __init__(self, cfg, data: DataSpec):
        super().__init__(cfg, data)
        if cfg.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {cfg.temperature}")
        self.pre = self._pre(cfg)
        self.flow = self._flow(cfg, data)

    def _pre(self, cfg) -> nn.Module:
        raise NotImplementedError

    def _flow(self, cfg, data: DataSpec) -> nn.Module:
        raise NotImplementedError

    def log_prob_u(self, u: torch.Tensor) -> torch.Tensor:
        """Exact log p(u) per image (N,), nats."""
        l, ld_pre = self.pre(u)
        y, ld_flow = self.flow(l)
        return standard_normal_logp(y) + ld_flow + ld_pre

    def _mle_terms(self, batch: Batch) -> Dict[str, torch.Tensor]:
        nll = -self.log_prob_u(dequantize(batch.x, self.data.levels)).mean()
        d = self.data
        return {"loss": nll / d.dims, "nll": nll.detach(), "bpd": bits_per_dim(nll.detach(), d.dims, d.levels)}

    def losses(self, phase: str, batch: Batch) -> Dict[str, torch.Tensor]:
        if phase != "main":
            raise KeyError(f"{type(self).__name__} has no phase {phase!r}; its only phase is 'main'")
        return self._mle_terms(batch)

    @torch.no_grad()
    def nll(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """-log p(u) in nats per image, exact for the dequantised u (``k`` is accepted and changes nothing)."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if x.is_floating_point():
            raise ValueError("nll expects integer intensity levels (uint8 N x C x H x W), got floats: "
                             "pass the dataset's images, not u-space values")
        return -self.log_prob_u(dequantize(x.to(self.device), self.data.levels))

    def _decode(self, y: torch.Tensor) -> torch.Tensor:
        """Unclamped u-space image of latent y: pre^{-1}(f^{-1}(y)); differentiable."""
        return self.pre.inverse(self.flow.inverse(y))

    def _latents(self, n: int, temperature: float = 1.0) -> torch.Tensor:
        p = next(self.parameters())
        return temperature * torch.randn((n, *self.data.shape), device=p.device, dtype=p.dtype)

    @torch.no_grad()
    def sample(self, n: int, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if labels is not None:
            raise ValueError(f"{type(self).__name__} is unconditional: call sample(n) without labels")
        with fast_inference(self):
            return self._decode(self._latents(n, self.cfg.temperature)).clamp(0.0, 1.0)


class RealNVPModel(FlowDensityModel):
    def _pre(self, cfg):
        return LogitTransform(cfg.alpha)

    def _flow(self, cfg, data):
        return RealNVP(data.channels, data.resolution, scales=cfg.scales, blocks=cfg.blocks, mid=cfg.mid,
                       couplings=cfg.couplings, bn_in_st=cfg.bn_in_st, final_couplings=cfg.final_couplings)


class GlowModel(FlowDensityModel):
    def _pre(self, cfg):
        return CenterTransform()

    def _flow(self, cfg, data):
        return Glow(data.channels, data.resolution, levels=cfg.levels, depth=cfg.depth, hidden=cfg.hidden,
                    learned_prior=cfg.learned_prior)


class FlowGAN(RealNVPModel):
    """Hybrid MLE + adversarial Real-NVP (Flow-GAN(H)); phases ("disc", "gen")."""

    phases = ("disc", "gen")

    def __init__(self, cfg: FlowGANConfig, data: DataSpec):
        super().__init__(cfg, data)
        if cfg.adv_loss not in ("wgan", "ce"):
            raise ValueError(f"adv_loss must be 'wgan' or 'ce', got {cfg.adv_loss!r}")
        if cfg.like_reg <= 0:
            raise ValueError(f"like_reg must be > 0 (the adversarial weight is 1/like_reg), got {cfg.like_reg}")
        self.disc = build_discriminator(cfg.disc, data.channels, data.resolution, cfg.disc_width)

    def phase_parameters(self, phase: str):
        if phase == "disc":
            return list(self.disc.parameters())
        if phase == "gen":
            return list(self.flow.parameters())
        raise KeyError(f"FlowGAN has no phase {phase!r}; its phases are 'disc' and 'gen'")

    def losses(self, phase: str, batch: Batch) -> Dict[str, torch.Tensor]:
        if phase == "disc":
            return self._disc_losses(batch)
        if phase == "gen":
            return self._gen_losses(batch)
        raise KeyError(f"FlowGAN has no phase {phase!r}; its phases are 'disc' and 'gen'")

    def _disc_losses(self, batch: Batch) -> Dict[str, torch.Tensor]:
        real = 2.0 * dequantize(batch.x, self.data.levels) - 1.0
        with torch.no_grad():
            fake = 2.0 * self._decode(self._latents(batch.x.shape[0])) - 1.0
        if self.cfg.adv_loss == "ce":
            return discriminator_losses(self.disc, real, fake, gp_weight=self.cfg.gp_weight)
        a_real, a_fake = self.disc(real), self.disc(fake)
        critic = a_fake.mean() - a_real.mean()
        gp = gradient_penalty(self.disc, real, fake)
        return {"loss": critic + self.cfg.gp_weight * gp, "critic": critic.detach(), "gp": gp.detach()}

    def _gen_losses(self, batch: Batch) -> Dict[str, torch.Tensor]:
        out = self._mle_terms(batch)
        fake = 2.0 * self._decode(self._latents(batch.x.shape[0])) - 1.0
        with frozen(self.disc):
            adv = g_loss(self.disc(fake))          # -mean a(fake): WGAN generator loss and the paper's L_Q
        out["loss"] = out["loss"] + adv / (self.cfg.like_reg * self.data.dims)
        out["adv"] = adv.detach()
        return out


# ---- registration, with the presets of the smaller budgets ----------------------------------------------
register_model("realnvp", config=RealNVPConfig,
               presets={"smoke": {"scales": 2, "blocks": 1, "mid": 8, "couplings": 2, "final_couplings": 2},
                        "cpu": {"scales": 2, "blocks": 2, "mid": 32, "couplings": 3, "final_couplings": 4,
                                "train.steps": 300, "train.grad_clip": 100.0},
                        "paper": {"train.grad_clip": 100.0}},
               description="Real-NVP (Dinh et al. 2017), multi-scale, trained by maximum likelihood",
               paper="Table 3, MLE: Real-NVP")(RealNVPModel)
register_model("glow", config=GlowConfig,
               presets={"smoke": {"levels": 2, "depth": 2, "hidden": 8},
                        "cpu": {"levels": 2, "depth": 8, "hidden": 64, "train.steps": 600, "train.grad_clip": 100.0},
                        "paper": {"train.grad_clip": 100.0}},
               description="Glow (Kingma & Dhariwal 2018): actnorm, invertible 1x1 conv, affine coupling",
               paper="Table 3, MLE: Glow")(GlowModel)
register_model("flowgan", config=FlowGANConfig, base="realnvp",
               presets={"smoke": {"disc_width": 8}, "cpu": {"disc_width": 32, "train.steps": 100}},
               description="Flow-GAN hybrid (Grover et al. 2018): Real-NVP generator, MLE + adversarial loss",
               paper="Table 3, Hybrid (L): FlowGan(H)")(FlowGAN)
