"""The paper's ablation family (Table 1), its refinements (Table 2, Table 9) and the conditional model.

Two model classes, each with one config dataclass; every registered name is that class with other config
*defaults* (``MODELS.meta(name)["defaults"]``, see ``models.base.default_config``).

* :class:`GAN` (``gan``, ``gan-rd``): SNGAN standard-CNN generator and discriminator without
  spectral norm, gradient penalty 100 (Appendix C).  Its likelihood bound (Section 5) comes from a
  second stage, ``inference``, which trains an inference network and an isotropic sigma around the
  frozen generator; ``nll`` is ``None`` until that stage has run.
* :class:`ADE` (``vae``, ``vade``, ``avgde``, ``avade`` and refinements): the top-down hierarchical
  VAE of :mod:`models.hvae` with a factorised Gaussian decoder of trainable isotropic sigma,
  either in v = 2u - 1 space (``flow=False``: VAE, AV-GDE) or in the feature space of
  f_psi = Real-NVP o logit (``flow=True``: V-ADE, AV-ADE).  The likelihood loss is L_C of Eq. 4,
  the adversarial loss L_Q of Eq. 5; the generator minimises ``kappa * L_C + lambda * L_Q``
  (Algorithm 1 of Appendix H, one D step per G step).

Spaces: the data u = dequantize(x) in [0, 1)^D.  Likelihoods are densities on u in nats per image:
ADE ``-log p(u) <= -ELBO(f(logit(u))) - logdet_f - logdet_logit``; GDE ``<= -ELBO(2u - 1) - D ln 2``.
The discriminator sees images in [-1, 1]: ``2u - 1`` for data, ``2 f^{-1}(.) - 1`` (unclamped) or the
tanh mean for fakes.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from common.fields import opt

from .adversarial import GP_WEIGHT, discriminator_losses, g_loss
from .base import Batch, DataSpec, GenerativeModel, Stage, bits_per_dim, dequantize, register_model
from .presets import CPU32, CPU_GP, PER_DIM, RD_WIDTH, TABLE9_AVADE, TABLE9_VADE, TTUR, merged, rd_presets
from .recipes import Recipe, derived, register_recipe
from .spaces import ADVERSARIAL, CORE, HYBRID, register_space
from .discriminators import build_discriminator
from .flows import LogitTransform, RealNVP
from .hvae import TopDownVAE
from .layers import eval_mode, fast_inference, frozen, randn_like, weight_cache
from .nets import Encoder, Generator, gaussian_log_density, kl_normal

SAMPLE_NOISE = ("mean", "gaussian")
LC_SCALES = ("per_dim", "per_image")
GEN_NORMS = ("bn", "wn")
DISCS = ("simple", "rd")


def _check_choice(name: str, value: str, choices) -> None:
    if value not in choices:
        raise ValueError(f"config {name}={value!r} is not valid; use one of: {', '.join(choices)}")


def _labels(n: int, n_classes: int, device, labels: Optional[torch.Tensor] = None):
    """Labels for a conditional model: the given ones, or uniform random ones."""
    if labels is not None:
        return labels.to(device=device, dtype=torch.long)
    return torch.randint(0, n_classes, (n,), device=device)


def _batch_labels(model: GenerativeModel, batch: Batch) -> Optional[torch.Tensor]:
    """The batch's labels for a conditional model (an error without them), None otherwise."""
    if not model.conditional:
        return None
    if batch.y is None:
        raise ValueError("a conditional model needs labels in every batch (Batch.y)")
    return batch.y.to(model.device, torch.long)


def _iw_bound(log_w: torch.Tensor) -> torch.Tensor:
    """-log (1/K sum_k exp(log_w[k])) per image from a (K, N) table of log-weights."""
    return -(torch.logsumexp(log_w, dim=0) - math.log(log_w.shape[0]))


# =============================================================================================
# GAN baseline with an inference network around the frozen generator (Section 5)
# =============================================================================================
@dataclass
class GANConfig:
    z_dim: int = opt(128, min=1)                   # latent size (SNGAN: 128, z ~ N(0, I))
    width: int = opt(64, min=1)                    # generator channels at full resolution (512..64 at 32x32)
    gen_norm: str = opt("bn", choices=GEN_NORMS)   # bn (SNGAN) | wn
    disc: str = opt("simple", choices=DISCS)       # simple (SNGAN standard CNN, leaky ReLU 0.2) | rd (Table 6)
    disc_width: int = opt(64, min=1)               # simple: 64 (64..512 at 32x32); rd: 16 (Table 6)
    gp_weight: float = opt(GP_WEIGHT, min=0)       # gradient-penalty coefficient (Appendix C: 100)
    enc_width: int = opt(64, min=1)                # inference network width (the VAE encoder without heads)
    infer_steps: int = opt(20000, min=0)           # steps of the inference stage (not stated by the paper;
    #                                                bounded by train.steps like every stage)
    conditional: bool = False                      # class-conditional G (conditional BN / WN) + projection D


class GAN(GenerativeModel):
    phases = ("disc", "gen")

    def __init__(self, cfg: GANConfig, data: DataSpec):
        super().__init__(cfg, data)
        c, r = data.channels, data.resolution
        if cfg.conditional and data.n_classes < 1:
            raise ValueError("a conditional model needs labelled data (DataSpec.n_classes > 0)")
        self.conditional = bool(cfg.conditional)
        self.n_classes = data.n_classes if cfg.conditional else 0
        self.G = Generator(c, r, cfg.z_dim, cfg.width, cfg.gen_norm, "tanh", n_classes=self.n_classes)
        self.D = build_discriminator(cfg.disc, c, r, cfg.disc_width, self.n_classes)
        self.inference = Encoder(c, r, cfg.enc_width, cfg.z_dim)
        self.log_sigma = nn.Parameter(torch.zeros(()))
        self.register_buffer("infer_steps_done", torch.zeros((), dtype=torch.long))

    @classmethod
    def stage_plan(cls, cfg: GANConfig, steps: int) -> List[Stage]:
        return [Stage("adversarial", ("disc", "gen"), int(steps)),
                Stage("inference", ("infer",), int(cfg.infer_steps), plateau=True)]

    def phase_parameters(self, phase: str):
        groups = {"disc": lambda: self.D.parameters(), "gen": lambda: self.G.parameters(),
                  "infer": lambda: [*self.inference.parameters(), self.log_sigma]}
        if phase not in groups:
            raise KeyError(f"GAN has no phase {phase!r}; phases: {', '.join(groups)}")
        return list(groups[phase]())

    def _z(self, n: int) -> torch.Tensor:
        return torch.randn(n, self.cfg.z_dim, device=self.device)

    def _batch_labels(self, batch: Batch) -> Optional[torch.Tensor]:
        return _batch_labels(self, batch)

    def losses(self, phase: str, batch: Batch) -> Dict[str, torch.Tensor]:
        x, y = batch.x.to(self.device), self._batch_labels(batch)
        if phase == "disc":
            real = 2 * dequantize(x, self.data.levels) - 1
            with torch.no_grad():
                fake = self.G(self._z(x.shape[0]), y)
            return discriminator_losses(self.D, real, fake, self.cfg.gp_weight, y, y)
        if phase == "gen":
            with frozen(self.D):
                lq = g_loss(self.D(self.G(self._z(x.shape[0]), y), y))
            return {"loss": lq, "l_q": lq.detach()}
        if phase == "infer":
            with eval_mode(self.G), frozen(self.G):
                nll = self._elbo_nll(dequantize(x, self.data.levels), y)
            self.infer_steps_done += 1
            return {"loss": nll.mean() / self.data.dims, "nll": nll.mean().detach(),
                    "bpd": bits_per_dim(nll.mean().detach(), self.data.dims, self.data.levels),
                    "sigma": self.log_sigma.exp().detach()}
        raise KeyError(f"GAN has no phase {phase!r}; phases: disc, gen, infer")

    def _log_w(self, u: torch.Tensor, k: int, elbo: bool, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        """(k, N) log-weights log p(v|z) + D ln 2 - [KL or log q/p] for z ~ q(z | v), v = 2u - 1."""
        v = 2 * u - 1
        m0, ls0, _ = self.inference(v)
        out = []
        for _ in range(k):
            z = m0 + torch.exp(ls0) * randn_like(m0)
            rec = gaussian_log_density(v, self.G(z, y), self.log_sigma.expand_as(v))
            reg = kl_normal(m0, ls0) if elbo else (gaussian_log_density(z, m0, ls0)
                                                   - gaussian_log_density(z, 0 * z, 0 * z))
            out.append(rec - reg + self.data.dims * math.log(2.0))
        return torch.stack(out)

    def _elbo_nll(self, u: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        return -self._log_w(u, 1, elbo=True, y=y)[0]

    def _nll_given(self, u: torch.Tensor, k: int, y: Optional[torch.Tensor]) -> torch.Tensor:
        return self._elbo_nll(u, y) if k == 1 else _iw_bound(self._log_w(u, k, elbo=False, y=y))

    @torch.no_grad()
    def nll(self, x: torch.Tensor, k: int = 1, labels: Optional[torch.Tensor] = None) -> Optional[torch.Tensor]:
        """Upper bound on -log p(u) in nats per image (None before the inference stage); a conditional GAN without
        labels marginalises a uniform class prior."""
        if int(self.infer_steps_done) == 0:
            return None
        with fast_inference(self):
            u = dequantize(x.to(self.device), self.data.levels)
            if not self.conditional or labels is not None:
                return self._nll_given(u, k, None if labels is None else labels.to(self.device, torch.long))
            per_class = torch.stack([self._nll_given(u, k, torch.full((u.shape[0],), c, dtype=torch.long,
                                                                      device=u.device))
                                     for c in range(self.n_classes)])
            return _iw_bound(-per_class)

    @torch.no_grad()
    def kl(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """KL of the inference network's posterior to N(0, I) (nats/image); None before the inference stage, and
        for a conditional GAN (its bound is per class)."""
        if int(self.infer_steps_done) == 0 or self.conditional:
            return None
        with fast_inference(self):
            m0, ls0, _ = self.inference(2 * dequantize(x.to(self.device), self.data.levels) - 1)
            return kl_normal(m0, ls0)

    @torch.no_grad()
    def sample(self, n: int, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        with fast_inference(self):
            y = _labels(n, self.n_classes, self.device, labels) if self.conditional else None
            return ((self.G(self._z(n), y) + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Reconstruction through the inference net; a conditional GAN without labels uses, per image,
        the class with the best bound (as the conditional AV-ADE does)."""
        with fast_inference(self):
            u = dequantize(x.to(self.device), self.data.levels)
            y = None if labels is None else labels.to(self.device, torch.long)
            if self.conditional and y is None:
                per_class = torch.stack([self._elbo_nll(u, torch.full((u.shape[0],), c, dtype=torch.long,
                                                                      device=u.device))
                                         for c in range(self.n_classes)])
                y = per_class.argmin(dim=0)
            return ((self.G(self.inference(2 * u - 1)[0], y) + 1) / 2).clamp(0, 1)


# =============================================================================================
# VAE / V-ADE / AV-GDE / AV-ADE (+ refinements, class-conditional)
# =============================================================================================
@dataclass
class ADEConfig:
    flow: bool = True                # f_psi = Real-NVP o logit in front of the VAE (ADE) or not (GDE)
    adversarial: bool = True         # add L_Q and a discriminator (AV-*)
    conditional: bool = False        # class-conditional decoder (CWN, Eq. 16) + projection D
    z_dim: int = opt(128, min=1)     # top latent z0
    width: int = opt(64, min=1)      # decoder channels at full resolution (wg: 128)
    enc_width: int = opt(64, min=1)  # encoder channels at full resolution
    latent_ch: int = opt(32, min=1)  # latent channels per layer (Appendix C: 32)
    iaf: bool = False                # IAF posterior step per latent layer (Appendix B.2)
    iaf_hidden: int = opt(64, min=1)  # IAF hidden/context channels (a multiple of latent_ch)
    flow_scales: int = opt(1, min=1)  # Real-NVP scales (Appendix C: 1; s2: 2)
    flow_blocks: int = opt(3, min=1)  # residual blocks per s/t net (Section 5.1: 3; Appendix C: 2)
    flow_mid: int = opt(32, min=1)   # s/t net width: with 3 blocks f_psi is 1.4% of AV-ADE (Section 5.1)
    flow_couplings: int = opt(3, min=1)  # couplings per scale (Appendix C: "three Real-NVP layers")
    flow_adv_grad: bool = False      # let L_Q's gradient reach psi (Appendix C: f trained by MLE only)
    disc: str = opt("simple", choices=DISCS)  # simple | rd
    disc_width: int = opt(64, min=1)  # simple: 64; rd: 16
    gp_weight: float = opt(GP_WEIGHT, min=0)  # Appendix C: 100
    adv_weight: float = opt(100.0, min=0)     # lambda on L_Q (Appendix C: 100)
    lc_scale: str = opt("per_image", choices=LC_SCALES)  # L_C in nats per image (Eq. 4, the paper's reading: the
    #                                                    reference code trains on per-image nats) or per dimension
    #                                                    (per_dim: the adversarial weight becomes adv_weight x D)
    sample_noise: str = opt("mean", choices=SAMPLE_NOISE)  # samples/L_Q fakes: f^{-1}(mu(z)) (Eq. 5) |
    #                                                        f^{-1}(mu + sigma eps) (Alg. 1)
    log_sigma_init: float = 0.0      # initial log of the isotropic decoder sigma

    #: fields that only matter with a discriminator / with f_psi / with IAF steps
    ADVERSARIAL_KEYS = ("disc", "disc_width", "gp_weight", "adv_weight", "flow_adv_grad")
    FLOW_KEYS = ("flow_scales", "flow_blocks", "flow_mid", "flow_couplings", "flow_adv_grad")


class ADE(GenerativeModel):
    """Hierarchical VAE, optionally with f_psi and/or an adversarial loss (see module docstring)."""

    def __init__(self, cfg: ADEConfig, data: DataSpec):
        super().__init__(cfg, data)
        _check_choice("sample_noise", cfg.sample_noise, SAMPLE_NOISE)
        _check_choice("lc_scale", cfg.lc_scale, LC_SCALES)
        if cfg.conditional and data.n_classes < 1:
            raise ValueError("a conditional model needs labelled data (DataSpec.n_classes > 0)")
        self.conditional = bool(cfg.conditional)
        self.phases = self.phases_for(cfg)
        self.n_classes = data.n_classes if cfg.conditional else 0
        c, r = data.channels, data.resolution
        self.vae = TopDownVAE(c, r, cfg.width, cfg.z_dim, cfg.latent_ch, cfg.enc_width, cfg.iaf,
                              cfg.iaf_hidden, self.n_classes, "identity" if cfg.flow else "tanh")
        self.log_sigma = nn.Parameter(torch.tensor(float(cfg.log_sigma_init)))
        self.logit = LogitTransform() if cfg.flow else None
        self.flow = RealNVP(c, r, cfg.flow_scales, cfg.flow_blocks, cfg.flow_mid, cfg.flow_couplings) \
            if cfg.flow else None
        self.D = build_discriminator(cfg.disc, c, r, cfg.disc_width, self.n_classes) \
            if cfg.adversarial else None

    @staticmethod
    def phases_for(cfg: ADEConfig) -> Tuple[str, ...]:
        return ("disc", "gen") if cfg.adversarial else ("main",)

    @classmethod
    def stage_plan(cls, cfg: ADEConfig, steps: int) -> List[Stage]:
        return [Stage("main", cls.phases_for(cfg), int(steps))]

    @classmethod
    def inactive_keys(cls, cfg: ADEConfig) -> Tuple[str, ...]:
        off = set() if cfg.adversarial else set(ADEConfig.ADVERSARIAL_KEYS)
        off |= set() if cfg.flow else set(ADEConfig.FLOW_KEYS)
        off |= set() if cfg.iaf else {"iaf_hidden"}
        return tuple(sorted(off))

    # ---- spaces ----------------------------------------------------------------------------
    def _features(self, u: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """u -> (target of the Gaussian decoder, log|det d target / d u| per image)."""
        if self.flow is None:
            return 2 * u - 1, torch.full((u.shape[0],), self.data.dims * math.log(2.0), device=u.device)
        l, ld_logit = self.logit(u)
        y, ld_flow = self.flow(l)
        return y, ld_logit + ld_flow

    def _to_v(self, feat: torch.Tensor) -> torch.Tensor:
        """Decoder-space image -> [-1, 1] image for D (unclamped: f^{-1} then 2u - 1)."""
        if self.flow is None:
            return feat
        return 2 * self.logit.inverse(self.flow.inverse(feat)) - 1

    def _generate(self, n: int, labels: Optional[torch.Tensor]) -> torch.Tensor:
        """Prior sample in decoder space, with decoder noise when ``sample_noise == "gaussian"``."""
        feat = self.vae.prior_mean(n, labels, self.device)
        if self.cfg.sample_noise == "gaussian":
            feat = feat + torch.exp(self.log_sigma) * randn_like(feat)
        return feat

    def _fake_v(self, n: int, labels: Optional[torch.Tensor]) -> torch.Tensor:
        feat = self._generate(n, labels)
        if self.flow is not None and not self.cfg.flow_adv_grad:
            with frozen(self.flow):
                return self._to_v(feat)
        return self._to_v(feat)

    # ---- training ----------------------------------------------------------------------------
    def phase_parameters(self, phase: str):
        if phase not in self.phases:
            raise KeyError(f"{type(self).__name__} has no phase {phase!r}; phases: {', '.join(self.phases)}")
        if phase == "disc":
            return list(self.D.parameters())
        return [p for name, p in self.named_parameters() if not name.startswith("D.")]

    def _batch_labels(self, batch: Batch) -> Optional[torch.Tensor]:
        return _batch_labels(self, batch)

    def _nll_parts(self, u: torch.Tensor, labels: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        target, logdet = self._features(u)
        post = self.vae.posterior(target, labels)
        rec = gaussian_log_density(target, post.mean, self.log_sigma.expand_as(target))
        return {"nll": -(rec - post.kl + logdet), "rec": rec, "kl": post.kl, "logdet": logdet}

    def losses(self, phase: str, batch: Batch) -> Dict[str, torch.Tensor]:
        x, labels = batch.x.to(self.device), self._batch_labels(batch)
        u = dequantize(x, self.data.levels)
        if phase == "disc":
            with torch.no_grad():
                fake = self._fake_v(x.shape[0], labels)
            return discriminator_losses(self.D, 2 * u - 1, fake, self.cfg.gp_weight, labels, labels)
        if phase not in self.phases:
            raise KeyError(f"{type(self).__name__} has no phase {phase!r}; phases: {', '.join(self.phases)}")
        with weight_cache(self.vae):   # the posterior and the prior pass share the decoder's WN weights
            return self._gen_losses(x, u, labels)

    def _gen_losses(self, x: torch.Tensor, u: torch.Tensor, labels: Optional[torch.Tensor]) -> Dict[str, torch.Tensor]:
        parts = self._nll_parts(u, labels)
        nll = parts["nll"].mean()
        kappa = 1.0 / self.data.dims if self.cfg.lc_scale == "per_dim" else 1.0
        out = {"loss": kappa * nll, "nll": nll.detach(), "kl": parts["kl"].mean().detach(),
               "bpd": bits_per_dim(nll.detach(), self.data.dims, self.data.levels),
               "sigma": self.log_sigma.exp().detach()}
        if self.D is not None:
            with frozen(self.D):
                lq = g_loss(self.D(self._fake_v(x.shape[0], labels), labels))
            out["loss"] = out["loss"] + self.cfg.adv_weight * lq
            out["l_q"] = lq.detach()
        return out

    # ---- evaluation --------------------------------------------------------------------------
    def _log_w(self, u: torch.Tensor, labels: Optional[torch.Tensor], k: int) -> torch.Tensor:
        """(k, N) importance log-weights log p(u, z) - log q(z | u) at k posterior draws."""
        target, logdet = self._features(u)
        rows = []
        for _ in range(k):
            post = self.vae.posterior(target, labels)
            rec = gaussian_log_density(target, post.mean, self.log_sigma.expand_as(target))
            rows.append(rec - post.log_ratio + logdet)
        return torch.stack(rows)

    def _nll_given(self, u: torch.Tensor, labels: Optional[torch.Tensor], k: int) -> torch.Tensor:
        if k == 1:
            return self._nll_parts(u, labels)["nll"]
        return _iw_bound(self._log_w(u, labels, k))

    @torch.no_grad()
    def nll(self, x: torch.Tensor, k: int = 1, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Upper bound on -log p(u) (nats/image).  A conditional model without labels reports the
        marginal over a uniform class prior: -log (1/K sum_y exp(-bound(u | y)))."""
        if k < 1:
            raise ValueError(f"nll needs k >= 1 importance samples, got {k}")
        with fast_inference(self):
            u = dequantize(x.to(self.device), self.data.levels)
            if not self.conditional or labels is not None:
                return self._nll_given(u, labels.to(self.device) if labels is not None else None, k)
            per_class = torch.stack([self._nll_given(u, self._const_labels(u, c), k)
                                     for c in range(self.n_classes)])
            return _iw_bound(-per_class)

    @torch.no_grad()
    def kl(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """KL(q(z|x) || p(z)) summed over the latent layers (nats/image); None for a conditional model (per class)."""
        if self.conditional:
            return None
        with fast_inference(self):
            return self._nll_parts(dequantize(x.to(self.device), self.data.levels), None)["kl"]

    def _const_labels(self, u: torch.Tensor, c: int) -> torch.Tensor:
        return torch.full((u.shape[0],), c, dtype=torch.long, device=u.device)

    def _to_u(self, feat: torch.Tensor) -> torch.Tensor:
        return ((self._to_v(feat) + 1) / 2).clamp(0, 1)

    @torch.no_grad()
    def sample(self, n: int, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """n images in [0, 1]; a conditional model uses ``labels`` (uniform random ones if None)."""
        with fast_inference(self):
            labels = _labels(n, self.n_classes, self.device, labels) if self.conditional else None
            return self._to_u(self._generate(n, labels))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        """Encode, draw z ~ q(z|x), decode (with the sampling convention); a conditional model
        without labels uses, per image, the class with the best single-sample bound."""
        with fast_inference(self):
            u = dequantize(x.to(self.device), self.data.levels)
            if self.conditional and labels is None:
                per_class = torch.stack([self._nll_given(u, self._const_labels(u, c), 1)
                                         for c in range(self.n_classes)])
                labels = per_class.argmin(dim=0)
            elif labels is not None:
                labels = labels.to(self.device)
            feat = self.vae.posterior(self._features(u)[0], labels).mean
            if self.cfg.sample_noise == "gaussian":
                feat = feat + torch.exp(self.log_sigma) * randn_like(feat)
            return self._to_u(feat)


# =============================================================================================
# Registration: one class per family; a name is that class with different config defaults (what the name
# means: the paper's sizes) and its presets (how wide and how long it trains at each smaller budget).
# =============================================================================================
_TABLE1 = "Table 1 row {}"
_GAN_SIZES = {"smoke": {"width": 4, "enc_width": 4, "disc_width": 4, "z_dim": 8, "infer_steps": 2},
              # the inference stage runs until its validation bound stops improving (3 checks of 100 steps), at
              # most train.steps: BPD then compares generators, not inference budgets
              "cpu": {"width": 32, "enc_width": 32, "disc_width": 32, "z_dim": 32, **CPU_GP, "train.steps": 2000,
                      "infer_steps": 20000, "train.plateau_patience": 3},
              "cpu@32": {**CPU32, **TTUR}}
_ADE_SIZES = {"smoke": {"width": 4, "enc_width": 4, "disc_width": 4, "z_dim": 8, "latent_ch": 4, "iaf_hidden": 8,
                        "flow_mid": 8, "flow_blocks": 1, **PER_DIM},
              "cpu": {"width": 32, "enc_width": 32, "disc_width": 32, "z_dim": 32, "latent_ch": 8, "iaf_hidden": 16,
                      "flow_mid": 16, "flow_blocks": 2, **PER_DIM}}
_RD = {"disc": "rd", "disc_width": RD_WIDTH["paper"]}
_REGISTRY: List[Tuple[str, type, dict, dict, Optional[str], str, str]] = [
    # name, model class, config defaults, presets, base (presets extended), description, paper row
    ("gan", GAN, {}, _GAN_SIZES, None, "SNGAN standard-CNN GAN, GP 100; BPD via an inference net around frozen G",
     _TABLE1.format("GAN")),
    ("gan-rd", GAN, _RD, rd_presets(), "gan", "GAN with the residual discriminator", "Table 2 row GAN (rd)"),
    ("gan-cond", GAN, {"conditional": True}, {}, "gan",
     "class-conditional GAN: conditional batch norm in G + projection D", "Table 8 row GAN"),
    ("vae", ADE, {"flow": False, "adversarial": False}, merged(_ADE_SIZES, {"cpu": {"train.steps": 2000},
                                                                           "cpu@32": CPU32}), None,
     "top-down hierarchical VAE, Gaussian decoder in [-1,1] space", _TABLE1.format("VAE")),
    ("vade", ADE, {"adversarial": False, "sample_noise": "gaussian"},
     merged(_ADE_SIZES, {"cpu": {"train.steps": 600}, "cpu@32": CPU32}), None,
     "VAE in the feature space of f_psi (MLE only)", _TABLE1.format("V-ADE")),
    ("avgde", ADE, {"flow": False}, merged(_ADE_SIZES, {"cpu": {**CPU_GP, "train.steps": 600},
                                                        "cpu@32": {**CPU32, **TTUR}}), None,
     "VAE + adversarial loss, Gaussian decoder (no f_psi)", _TABLE1.format("AV-GDE")),
    ("avade", ADE, {}, merged(_ADE_SIZES, {"cpu": {**CPU_GP, "train.steps": 400}, "cpu@32": {**CPU32, **TTUR}}), None,
     "AV-ADE: L_C with f_psi + lambda L_Q", _TABLE1.format("AV-ADE")),
    ("avade-rd", ADE, _RD, rd_presets(), "avade", "AV-ADE, residual D", "Table 2 row AV-ADE (rd)"),
    ("avade-iaf-rd", ADE, {"iaf": True, **_RD}, {}, "avade-rd", "AV-ADE, IAF posterior, residual D",
     "Table 2 row AV-ADE (iaf, rd)"),
    ("avade-wg-rd", ADE, {"width": 128, **_RD}, {"smoke": {"width": 8}, "cpu": {"width": 64}}, "avade-rd",
     "AV-ADE, 2x decoder channels, residual D", "Table 2 row AV-ADE (wg, rd)"),
    ("avade-s2", ADE, {"flow_scales": 2}, {}, "avade", "AV-ADE with a 2-scale f_psi", "Table 2 row AV-ADE (s2)"),
    ("avade-cond", ADE, {"conditional": True}, {}, "avade",
     "class-conditional AV-ADE: CWN decoder (Eq. 16) + projection D", "Table 8 row AV-ADE"),
]
# Table 9 names fix their own f_psi size (scales, blocks); the smaller budgets keep it (they shrink only widths)
_REGISTRY += [(f"avade-s{s}b{b}", ADE, {"flow_scales": s, "flow_blocks": b},
               {"smoke": {"flow_blocks": b}, "cpu": {"flow_blocks": b}}, "avade",
               f"AV-ADE, f_psi with {s} scale(s) and {b} residual blocks", f"Table 9a row {s}/{b}")
              for s, b in TABLE9_AVADE]
_REGISTRY += [(f"vade-s{s}b{b}", ADE, {"adversarial": False, "sample_noise": "gaussian", "flow_scales": s,
                                       "flow_blocks": b},
               {"smoke": {"flow_blocks": b}, "cpu": {"flow_blocks": b}}, "vade",
               f"V-ADE, f_psi with {s} scale(s) and {b} residual blocks", f"Table 9b row {s}/{b}")
              for s, b in TABLE9_VADE]

for _name, _cls, _defaults, _presets, _base, _desc, _paper in _REGISTRY:
    register_model(_name, config=GANConfig if _cls is GAN else ADEConfig, defaults=_defaults, presets=_presets,
                   base=_base, description=_desc, paper=_paper)(_cls)

# Search spaces of the tuning studies (models/spaces.py), beside the registrations: the shared core for every model,
# a discriminator's knobs where there is one, the hybrids' extras; the names that extend these (base=) inherit them
for _name, _space in {"gan": CORE + ADVERSARIAL, "vae": CORE, "vade": CORE, "avgde": CORE + ADVERSARIAL + HYBRID,
                      "avade": CORE + ADVERSARIAL + HYBRID}.items():
    register_space(_name, *_space)


# =============================================================================================
# Recipes (models/recipes.py): the paper's optimisation, for the paper's own models
# =============================================================================================
#: Appendix C: "Adamax with learning rate 0.002, beta1 = 0.9, beta2 = 0.999 for all experiments ... gradient penalty
#: with coefficient 100, and 1 discriminator update per generator update ... All experiments reported here use
#: coefficient 100 [on the adversarial component]"; L_C of Eq. 4 is an expectation per image.  Every phase at one
#: rate (no two time-scale rule), no weight averaging, no gradient clipping (the paper mentions neither).
PAPER = register_recipe(Recipe(
    "paper", {"train.optimizer": "adamax", "train.lr": 2e-3, "train.phase_lr": "", "train.scalar_lr": 0.0,
              "train.beta1": 0.9, "train.beta2": 0.999, "train.disc_steps": 1, "train.ema": 0.0,
              "train.grad_clip": 0.0, "gp_weight": 100.0, "adv_weight": 100.0, "lc_scale": "per_image"},
    scope=(GAN, ADE), source="Appendix C", default_for=("paper",)))
#: the same with the gradient penalty at 10: at the cpu widths GP 100 held AV-ADE's diversity down (Fashion-MNIST,
#: 25.6k images: recall 0.004 against 0.26 at GP 10; ../docs/results.md)
register_recipe(derived(PAPER, "paper-gp10", "Appendix C with gradient penalty 10", gp_weight=10.0))
