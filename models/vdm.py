"""Variational Diffusion Model baseline, ``vdm`` (Kingma, Salimans, Poole & Ho, NeurIPS 2021).

References: the paper (arXiv 2107.00630) and the authors' code google-research/vdm (``model_vdm.py``,
``experiment_vdm.py``, ``configs/cifar10.py``), read and matched for every formula below (names in
parentheses are its functions).  The paper's section and equation numbers (arXiv v6) are cited from memory,
not re-checked against its text; the formulas written out here are what the code implements and the tests
check.  Continuous time (T = infinity), epsilon-prediction, discrete data with L levels.

Data.  A level k in 0..L-1 (uint8 image, L = ``DataSpec.levels``: 17 on digits, 256 otherwise) is mapped to
the centre of its bin in [-1, 1]: ``x = 2 (k + 0.5) / L - 1`` (``EncDec.encode``).

Forward process (Sec. 3.1-3.2).  ``z_t = alpha_t x + sigma_t eps`` with ``alpha_t^2 = sigmoid(-gamma(t))``,
``sigma_t^2 = sigmoid(gamma(t))``, SNR(t) = exp(-gamma(t)), gamma increasing on [0, 1].

Noise schedule (Sec. 3.2 and the appendix on the monotone network; ``NoiseSchedule_NNet``).
``schedule="learned"``: ``gamma(t) = gamma_0 + (gamma_1 - gamma_0) (h(t) - h(0)) / (h(1) - h(0))`` with
learnable endpoints (``gamma_1 = gamma_0 + exp(log_range)`` keeps them ordered) and ``h`` the monotone network
``|w1| t + (1/F) |w3| . phi(|w2| (2t - 1) + b2)``, F = 1024 sigmoid units, ``phi(a) = 2 sigmoid(a) - 1``
(every weight through ``abs``, the code's ``DenseMonotone``; initialised as the code: slope
gamma_max - gamma_min, N(0, 0.01^2) elsewhere, so it starts linear).  ``schedule="fixed"``: gamma linear from
``gamma_min`` to ``gamma_max``.  VDM's endpoints -13.3 and 5.0 are for 256 levels; ``gamma_min=None``
(default) scales the low end with the bin width, ``-13.3 + 2 ln(256 / L)`` (-13.3 at 256 levels, -7.88 at 17),
so that sigma_0 / alpha_0 = exp(gamma_0 / 2) is the same fraction (1/6) of a bin at every L.  gamma'(t) is
computed analytically (tested against autograd).

Training objective: the variational bound -log P(x) <= prior + diffusion + reconstruction (Sec. 3.5), nats per
image (``VDM.__call__``, ``Experiment_VDM.loss_fn``):

* prior: ``KL(q(z_1|x) || N(0, I)) = 1/2 sum(alpha_1^2 x^2 + sigma_1^2 - log sigma_1^2 - 1)``;
* diffusion, continuous time (Sec. 4, T -> infinity; Eq. 17 as recalled):
  ``1/2 E_{t ~ U(0,1), eps} [gamma'(t) ||eps - eps_hat(z_t; t)||^2]``, with VDM's low-discrepancy times across
  the batch, ``t_i = (u + i / N) mod 1`` (``antithetic=True``; each t_i is still U(0, 1) on its own, so every
  image's estimate is unbiased);
* reconstruction: ``-log p(x | z_0)`` with ``z_0 ~ q(z_0|x)`` and the factorised discrete decoder, logits
  ``-1/2 (z_0/alpha_0 - x_k)^2 / (sigma_0/alpha_0)^2`` over the L bin centres x_k, a softmax per dimension
  (``EncDec.logprob``).  The softmax runs over the bins within 11 standard deviations of z_0/alpha_0 (the
  others weigh < e^-60 of the nearest one): equal to the full softmax to float precision (tested).

The ``main`` phase back-propagates the bound in nats per dimension (``loss``, O(1) like the flows); it also logs
``bpd`` (the bound in bits/dim), its parts ``diff``, ``prior``, ``recon`` in bits/dim (they sum to ``bpd``, as
VDM's ``bpd_diff`` / ``bpd_latent`` / ``bpd_recon``) and the endpoints ``gamma_0``, ``gamma_1``.

Variance minimisation (Sec. 5: the continuous-time loss is invariant to the schedule between its endpoints,
and the schedule is learned to minimise the estimator's variance; not in the public code).  The invariance
needs a denoiser of the noise level rather than of t: the network is conditioned on gamma_t rescaled by the
fixed ``gamma_min`` / ``gamma_max`` (as the code).  The endpoints are trained on the bound; the shape parameters
(w1, w2, b2, w3) receive the gradient of the second moment of the per-image diffusion loss,
``d/d eta mean((L_diff / D)^2)``, which is the gradient of its variance since the mean does not depend on
them: a tensor hook scales the gradient reaching (h(t) - h(0)) / (h(1) - h(0)) and its derivative, per image,
by ``2 L_diff / D``.  ``variance_min=False`` trains the shape on the bound instead; ``time_input="t"`` breaks
the invariance and is refused together with ``variance_min``.  The network and the endpoints always get the
bound's gradient (tested).

Network (:class:`models.unet.UNet`, the code's ``ScoreUNet``): input ``z_t`` concatenated with Fourier features
``sin / cos(2^n pi z_t)`` (Sec. 3.4; ``Base2FourierFeatures`` uses 2^n * 2 pi for n in {6, 7}, i.e. 2^n pi for
n in {7, 8} at 256 levels: periods of 1 and 2 bins).  ``fourier_exponents=()`` keeps those periods at any L:
n in {b - 1, b}, b = round(log2 L), i.e. (7, 8) at 256 levels and (3, 4) at 17.  Output:
``eps_hat = net(...) + skip`` with the net's last conv zero-initialised.  ``skip="gaussian"`` (default) adds
the exact epsilon-predictor of data x ~ N(0, s^2 I), ``sigma_t z_t / (alpha_t^2 s^2 + sigma_t^2)`` with
s = ``data_std`` (0.5, EDM's sigma_data; in x-space this is EDM's c_skip preconditioning).  It puts the expected
bound at initialisation on uniformly random levels at log2 L + 0.84 bits/dim, at 17 and at 256 levels alike
(tested): 0.29 is the misfit of a Gaussian of std 0.5 to uniform levels, 0.55 the cost of resolving the inside
of a bin with a continuous predictor while sigma_t is below a bin.  ``skip="vdm"`` is the public code's
``eps_pred += z`` (log2 L + 1.5 bits/dim at initialisation at 17 levels, + 2.8 at 256); ``"none"`` starts at
eps_hat = 0, a diffusion term of (gamma_1 - gamma_0) / (2 ln 2) bits/dim alone (9.3 at 17 levels, 13.2 at 256).
None of the three changes what the network can represent, only where training starts.

Likelihood, and how it compares with the other models' BPD.  VDM bounds -log P(x) of the *discrete* image.  A
discrete model P defines the piecewise-constant density p(u) = P(x) L^D on [0, 1)^D (u in the bin of x), so
``nll(x, k)`` returns ``bound - D ln L`` nats per image: an upper bound on -log p(u) for every dequantisation u
of x, whose :func:`models.base.bits_per_dim` is exactly ``bound / (D ln 2)``, VDM's bits per dimension.  The
flows and VAEs report (NLL of u + D ln L) / (D ln 2) with uniform dequantisation, which by Jensen is also an
upper bound on -log2 P(x) / D of the discrete data (their P is the integral of p over the bin): both bound
the same quantity, the code length of the discrete test images, so they share one column.  ``nll`` draws t,
eps and z_0 afresh (the caller seeds the RNG: ``metrics.bpd``) and averages ``k * nll_samples`` estimates of
the same bound per image, with fresh eps and z_0 and times spread evenly over [0, 1) across the copies (less
noise, not a tighter bound: there is no importance weighting for a diffusion model).  On digits one estimate
per image gives a 360-image test BPD that varies by 0.05-0.07 bits/dim between seeds and four by about 0.016,
so the ``cpu`` preset sets ``nll_samples=4`` (validation and test BPD; cheap at 8x8); VDM and ``paper`` use 1,
where 10,000 test images average the noise out.

Sampling: ancestral, ``sample_steps`` steps of p(z_s | z_t) = q(z_s | z_t, x = x_hat(z_t)) on a uniform t grid
from z_1 ~ N(0, I) to z_0 (Sec. 3.3; the code's ``VDM.sample`` and ``generate_x``), then the decoder's most
likely bin (``sample_softmax=False``, as the code) or a sampled one; returns (k + 0.5) / L so that
:func:`models.base.quantize` gives back k.  Unconditional.  ``nfe_per_sample`` = ``sample_steps``.

Deviations from VDM's CIFAR-10 run (``paper`` preset): steps (VDM: 10M at batch 128 on a TPU v3-8; here the
suite's 200k); no EMA of the weights (VDM: 0.9999; the suite's trainer has none, which costs bits/dim and
sample quality at a given step); Adam (the suite's adamax | adam) without AdamW's weight decay 0.01 and without
the 100-step warm-up; lr 2e-4, betas (0.9, 0.99), batch 128 and no gradient clipping are VDM's.  The network is
VDM's (32 blocks of 128 channels, no downsampling, middle attention, dropout 0.1, Fourier features (7, 8)) with
the paper's learned monotone schedule (the public config trains a learnable *linear* one, ``learnable_scalar``;
``schedule=learned`` starts linear with free endpoints, so it contains that case).  ``eval.iw_k`` is 0 for this
model: ``nll(x, k > 1)`` is the same bound with less noise, not an importance-weighted one, and k = 100 would
cost 100 network passes per test image.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Dict, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn

from common.fields import opt

from .base import Batch, DataSpec, GenerativeModel, register_model
from .layers import eval_mode, randn_like
from .unet import UNet

__all__ = ["VDMConfig", "VDM", "FixedLinearSchedule", "LearnedSchedule", "FourierFeatures",
           "encode", "default_gamma_min", "default_fourier_exponents", "stratified_times", "prior_kl",
           "diffusion_loss", "discrete_recon_nll", "decode_levels", "ancestral_sample"]

SCHEDULES = ("learned", "fixed")
SKIPS = ("gaussian", "vdm", "none")
TIME_INPUTS = ("gamma", "t")
GammaFn = Callable[[torch.Tensor], Tuple[torch.Tensor, torch.Tensor]]
EpsFn = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


@dataclass
class VDMConfig:
    """Defaults: VDM's CIFAR-10 model (google-research/vdm configs/cifar10.py; the paper's experimental setup)."""

    # ---- noise schedule ----
    schedule: str = opt("learned", choices=SCHEDULES)   # learned: monotone network (paper) | fixed: linear
    gamma_min: Optional[float] = None   # gamma(0) (fixed) or its initial value (learned); None = -13.3 + 2 ln(256/L)
    gamma_max: float = 5.0              # gamma(1) (fixed) or its initial value (learned); VDM: 5.0
    schedule_features: int = opt(1024, min=1)  # sigmoid units of the monotone network (VDM: 1024)
    variance_min: bool = True           # schedule shape trained to minimise the diffusion loss's variance (Sec. 5)
    # ---- network ----
    ch: int = opt(128, min=1)           # U-Net base channels (VDM: 128)
    blocks: int = opt(32, min=0)        # residual blocks per level on the way down (+1 on the way up; VDM: 32)
    ch_mult: Tuple[int, ...] = (1,)     # channel multiplier per level; len - 1 = downsamplings (VDM: none)
    attn_mid: bool = True               # self-attention in the middle (lowest resolution; VDM: yes)
    dropout: float = opt(0.1, min=0, below=1)   # dropout in the residual blocks (VDM CIFAR-10: 0.1)
    time_input: str = opt("gamma", choices=TIME_INPUTS)  # the net sees gamma_t rescaled to [0, 1] (VDM) or t
    fourier: bool = True                # Fourier features of z_t concatenated to the input (VDM: yes)
    fourier_exponents: Tuple[int, ...] = ()   # n of sin/cos(2^n pi z); () = periods of 1 and 2 bins ((7, 8) at L=256)
    skip: str = opt("gaussian", choices=SKIPS)  # added to the net's output: Gaussian-optimal predictor | z_t | none
    data_std: float = opt(0.5, above=0)  # s of the Gaussian skip, in [-1, 1] units (EDM's sigma_data)
    # ---- estimators and sampling ----
    antithetic: bool = True             # low-discrepancy t across the batch (VDM: antithetic_time_sampling)
    sample_steps: int = opt(1000, min=1)  # ancestral sampling steps = network evaluations per sample (VDM: 1000)
    sample_softmax: bool = False        # sample the decoder's bin instead of taking the most likely (VDM: False)
    nll_samples: int = opt(1, min=1)    # estimates of the bound nll() averages per image (times k): less MC noise


def default_gamma_min(levels: int) -> float:
    """VDM's -13.3 at 256 levels, shifted so that exp(gamma_0 / 2) stays the same fraction of a bin (2 / L)."""
    return -13.3 + 2.0 * math.log(256.0 / levels)


def default_fourier_exponents(levels: int) -> Tuple[int, int]:
    """n in {b - 1, b}, b = round(log2 L): sin(2^n pi z) with periods of 2 and 1 bins ((7, 8) at 256 levels)."""
    b = int(round(math.log2(levels)))
    return (b - 1, b)


def encode(x: torch.Tensor, levels: int, dtype=torch.float32) -> torch.Tensor:
    """Levels 0..L-1 -> bin centres in [-1, 1]: 2 (k + 0.5) / L - 1."""
    return 2.0 * (x.to(dtype) + 0.5) / levels - 1.0


def _per_image(v: torch.Tensor) -> torch.Tensor:
    return v.reshape(v.shape[0], -1).sum(1)


def _bcast(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return v.reshape(-1, *([1] * (like.dim() - 1)))


# ---- noise schedules: forward(t) -> (gamma(t), gamma'(t)); endpoints() -> (gamma_0, gamma_1) -------------
class FixedLinearSchedule(nn.Module):
    def __init__(self, gamma_min: float, gamma_max: float):
        super().__init__()
        if not gamma_max > gamma_min:
            raise ValueError(f"gamma_max must exceed gamma_min, got {gamma_min} and {gamma_max}")
        self.register_buffer("g", torch.tensor([gamma_min, gamma_max]))

    def endpoints(self) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.g[0], self.g[1]

    def forward(self, t: torch.Tensor, shape_grad: Optional["LateGradScale"] = None):
        g0, g1 = self.endpoints()
        return g0 + (g1 - g0) * t, (g1 - g0).expand_as(t)


class LateGradScale:
    """Hook that multiplies a gradient by a per-image weight set after the forward pass (``weight``)."""

    def __init__(self):
        self.weight: Optional[torch.Tensor] = None

    def __call__(self, grad: torch.Tensor) -> torch.Tensor:
        if self.weight is None:
            raise RuntimeError("variance minimisation: the per-image weight was not set before backward")
        return grad * self.weight


class LearnedSchedule(nn.Module):
    """gamma(t) = gamma_0 + (gamma_1 - gamma_0) (h(t) - h(0)) / (h(1) - h(0)), h monotone (``NoiseSchedule_NNet``)."""

    def __init__(self, gamma_min: float, gamma_max: float, features: int = 1024):
        super().__init__()
        if not gamma_max > gamma_min:
            raise ValueError(f"gamma_max must exceed gamma_min, got {gamma_min} and {gamma_max}")
        self.gamma_0 = nn.Parameter(torch.tensor(float(gamma_min)))
        self.log_range = nn.Parameter(torch.tensor(math.log(gamma_max - gamma_min)))
        # initialised as vdm's NoiseSchedule_NNet: linear slope gamma_max - gamma_min, N(0, 0.01^2) elsewhere
        self.w1 = nn.Parameter(torch.tensor(float(gamma_max - gamma_min)))
        self.w2 = nn.Parameter(0.01 * torch.randn(features))
        self.b2 = nn.Parameter(torch.zeros(features))
        self.w3 = nn.Parameter(0.01 * torch.randn(features))

    def endpoints(self) -> Tuple[torch.Tensor, torch.Tensor]:
        return self.gamma_0, self.gamma_0 + torch.exp(self.log_range)

    def _h(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """h(t) and h'(t) for t (N,)."""
        w2, w3 = self.w2.abs(), self.w3.abs()
        s = torch.sigmoid(w2 * (2.0 * t[:, None] - 1.0) + self.b2)
        n = w3.numel()
        h = self.w1.abs() * t + (2.0 * s - 1.0) @ w3 / n
        dh = self.w1.abs() + (4.0 * s * (1.0 - s) * w2) @ w3 / n
        return h, dh

    def shape(self, t: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """(h(t) - h(0)) / (h(1) - h(0)) in [0, 1] and its derivative."""
        h, dh = self._h(torch.cat([t, t.new_tensor([0.0, 1.0])]))
        h0, h1 = h[-2], h[-1]
        return (h[:-2] - h0) / (h1 - h0), dh[:-2] / (h1 - h0)

    def forward(self, t: torch.Tensor, shape_grad: Optional[LateGradScale] = None):
        g0, g1 = self.endpoints()
        s, ds = self.shape(t)
        if shape_grad is not None and s.requires_grad:
            s.register_hook(shape_grad)
            ds.register_hook(shape_grad)
        return g0 + (g1 - g0) * s, (g1 - g0) * ds


class FourierFeatures(nn.Module):
    """sin and cos of 2^n pi z for each n, per channel (vdm's Base2FourierFeatures)."""

    def __init__(self, exponents):
        super().__init__()
        self.register_buffer("freq", math.pi * 2.0 ** torch.tensor([float(n) for n in exponents]),
                             persistent=False)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = (z[:, :, None] * self.freq.to(z.dtype)[None, None, :, None, None]).flatten(1, 2)
        return torch.cat([torch.sin(h), torch.cos(h)], dim=1)


# ---- the bound's terms (pure functions of tensors; nats per image) ------------------------------------
def stratified_times(n: int, device=None, dtype=torch.float32, antithetic: bool = True) -> torch.Tensor:
    """t (n,) in [0, 1): low-discrepancy (u + i/n) mod 1 (VDM), or i.i.d. uniform."""
    if not antithetic:
        return torch.rand(n, device=device, dtype=dtype)
    u = torch.rand((), device=device, dtype=dtype)
    return torch.remainder(u + torch.arange(n, device=device, dtype=dtype) / n, 1.0)


def prior_kl(f: torch.Tensor, gamma_1: torch.Tensor) -> torch.Tensor:
    """KL(q(z_1 | x) || N(0, I)) per image (the bound's prior term; the code's ``loss_klz``)."""
    kl = torch.sigmoid(-gamma_1) * f ** 2 + torch.sigmoid(gamma_1) - F.logsigmoid(gamma_1) - 1.0
    return 0.5 * _per_image(kl)


def diffusion_loss(f: torch.Tensor, t: torch.Tensor, gamma_fn: GammaFn, eps_fn: EpsFn,
                   eps: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Continuous-time diffusion loss per image: 1/2 gamma'(t) ||eps - eps_hat(z_t, gamma_t, t)||^2 (``loss_diff``)."""
    g, dg = gamma_fn(t)
    eps = randn_like(f) if eps is None else eps
    gb = _bcast(g, f)
    z = torch.sqrt(torch.sigmoid(-gb)) * f + torch.sqrt(torch.sigmoid(gb)) * eps
    return 0.5 * dg * _per_image((eps - eps_fn(z, g, t)) ** 2)


def _window(z: torch.Tensor, scale: float, levels: int):
    """Bin indices (..., 2W+1) around the nearest bin of z (in [-1, 1] units), a validity mask, the centres."""
    w = min(levels - 1, int(math.ceil(math.sqrt(120.0) * scale * levels / 2.0)) + 1)
    near = torch.clamp(torch.round((z + 1.0) * levels / 2.0 - 0.5), 0, levels - 1)
    k = near[..., None] + torch.arange(-w, w + 1, device=z.device, dtype=z.dtype)
    return k, (k >= 0) & (k < levels), 2.0 * (k + 0.5) / levels - 1.0


def _decoder_logits(z: torch.Tensor, scale: torch.Tensor, levels: int):
    """Logits of p(x | z_0) over the bins near z = z_0 / alpha_0 (masked ones -inf) and the bin indices."""
    k, valid, centres = _window(z.detach(), float(scale.detach().max()), levels)
    logits = -0.5 * ((z[..., None] - centres) / scale) ** 2
    return logits.masked_fill(~valid, float("-inf")), k


def discrete_recon_nll(x: torch.Tensor, f: torch.Tensor, gamma_0: torch.Tensor, levels: int,
                       eps0: Optional[torch.Tensor] = None) -> torch.Tensor:
    """-log p(x | z_0), z_0 ~ q(z_0 | x), factorised softmax over the L bin centres, per image (nats)."""
    scale = torch.exp(0.5 * gamma_0)                      # sigma_0 / alpha_0
    eps0 = randn_like(f) if eps0 is None else eps0
    z = f + scale * eps0                                  # z_0 / alpha_0
    logits, _ = _decoder_logits(z, scale, levels)
    return _per_image(torch.logsumexp(logits, dim=-1) + 0.5 * eps0 ** 2)


def decode_levels(z0: torch.Tensor, gamma_0: torch.Tensor, levels: int, sample: bool = False) -> torch.Tensor:
    """Levels (int64) of z_0 under p(x | z_0): the most likely bin (the nearest centre) or a sampled one."""
    z = z0 / torch.sqrt(torch.sigmoid(-gamma_0))
    logits, k = _decoder_logits(z, torch.exp(0.5 * gamma_0), levels)
    if sample:
        pick = torch.distributions.Categorical(logits=logits).sample()
    else:
        pick = logits.argmax(-1)
    return k.gather(-1, pick[..., None])[..., 0].long()


@torch.no_grad()
def ancestral_sample(z: torch.Tensor, steps: int, gamma_fn: GammaFn, eps_fn: EpsFn) -> torch.Tensor:
    """z_1 -> z_0 by ``steps`` draws of p(z_s | z_t) on t = i / steps (the code's ``VDM.sample``):
    z_s = alpha_s / alpha_t (z_t - sigma_t c eps_hat) + sigma_s sqrt(c) eps, c = 1 - SNR(t) / SNR(s)."""
    n = z.shape[0]
    for i in range(steps, 0, -1):
        t = torch.full((n,), i / steps, device=z.device, dtype=z.dtype)
        g_t = gamma_fn(t)[0]
        g_s = gamma_fn(t - 1.0 / steps if i > 1 else torch.zeros_like(t))[0]
        eps_hat = eps_fn(z, g_t, t)
        g_t, g_s = _bcast(g_t, z), _bcast(g_s, z)
        c = -torch.expm1(g_s - g_t)
        ratio = torch.sqrt(torch.sigmoid(-g_s) / torch.sigmoid(-g_t))            # alpha_s / alpha_t
        mean = ratio * (z - torch.sqrt(torch.sigmoid(g_t)) * c * eps_hat)
        z = mean + torch.sqrt(torch.sigmoid(g_s) * c) * randn_like(z)
    return z


# ---- the model -----------------------------------------------------------------------------------------
class VDM(GenerativeModel):
    """Continuous-time VDM with a discrete decoder; one phase, ``main`` (see the module docstring)."""

    def __init__(self, cfg: VDMConfig, data: DataSpec):
        super().__init__(cfg, data)
        if cfg.schedule == "learned" and cfg.variance_min and cfg.time_input != "gamma":
            raise ValueError("variance_min=True needs time_input='gamma' (the invariance of VDM Sec. 5 holds "
                             "for a denoiser of the noise level); set variance_min=false or time_input=gamma")
        if data.levels < 2:
            raise ValueError(f"VDM needs at least 2 intensity levels, got {data.levels}")
        self.gamma_min = default_gamma_min(data.levels) if cfg.gamma_min is None else float(cfg.gamma_min)
        self.gamma_max = float(cfg.gamma_max)
        self.schedule = (LearnedSchedule(self.gamma_min, self.gamma_max, cfg.schedule_features)
                         if cfg.schedule == "learned" else FixedLinearSchedule(self.gamma_min, self.gamma_max))
        exps = tuple(cfg.fourier_exponents) or default_fourier_exponents(data.levels)
        self.fourier = FourierFeatures(exps) if cfg.fourier else None
        in_ch = data.channels * (1 + (2 * len(exps) if cfg.fourier else 0))
        self.net = UNet(in_ch, data.channels, data.resolution, ch=cfg.ch, blocks=cfg.blocks,
                        ch_mult=tuple(cfg.ch_mult), attn_mid=cfg.attn_mid, dropout=cfg.dropout)

    @classmethod
    def inactive_keys(cls, cfg) -> Tuple[str, ...]:
        out = []
        if cfg.schedule == "fixed":
            out += ["schedule_features", "variance_min"]
        if not cfg.fourier:
            out.append("fourier_exponents")
        if cfg.skip != "gaussian":
            out.append("data_std")
        return tuple(out)

    @property
    def nfe_per_sample(self) -> int:
        """Network evaluations per sample (the sampling-cost comparison)."""
        return int(self.cfg.sample_steps)

    # ---- the denoiser --------------------------------------------------------------------------------
    def _skip(self, z: torch.Tensor, gamma: torch.Tensor):
        if self.cfg.skip == "none":
            return 0.0
        if self.cfg.skip == "vdm":
            return z
        g = _bcast(gamma, z)
        return torch.sqrt(torch.sigmoid(g)) * z / (torch.sigmoid(-g) * self.cfg.data_std ** 2 + torch.sigmoid(g))

    def eps_hat(self, z: torch.Tensor, gamma: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """eps_hat(z_t; gamma_t) (N, C, H, W); ``t`` is used only with ``time_input="t"``."""
        s = (gamma - self.gamma_min) / (self.gamma_max - self.gamma_min) if self.cfg.time_input == "gamma" else t
        h = z if self.fourier is None else torch.cat([z, self.fourier(z)], dim=1)
        return self.net(h, s) + self._skip(z, gamma)

    # ---- the bound -----------------------------------------------------------------------------------
    def bound_terms(self, x: torch.Tensor) -> Dict[str, torch.Tensor]:
        """prior, diff, recon: the bound on -log P(x) of uint8 levels x, nats per image (N,) each."""
        p = next(self.net.parameters())
        f = encode(x.to(p.device), self.data.levels, p.dtype)
        g0, g1 = self.schedule.endpoints()
        late = None
        if (self.training and torch.is_grad_enabled() and self.cfg.schedule == "learned"
                and self.cfg.variance_min):
            late = LateGradScale()
        t = stratified_times(f.shape[0], f.device, f.dtype, self.cfg.antithetic)
        diff = diffusion_loss(f, t, lambda s: self.schedule(s, late), self.eps_hat)
        if late is not None:
            late.weight = 2.0 * diff.detach() / self.data.dims
        return {"prior": prior_kl(f, g1), "diff": diff,
                "recon": discrete_recon_nll(x.to(p.device), f, g0, self.data.levels)}

    def losses(self, phase: str, batch: Batch) -> Dict[str, torch.Tensor]:
        if phase != "main":
            raise KeyError(f"VDM has no phase {phase!r}; its only phase is 'main'")
        terms = self.bound_terms(batch.x)
        total = terms["prior"] + terms["diff"] + terms["recon"]
        dims, to_bits = self.data.dims, 1.0 / (self.data.dims * math.log(2.0))
        g0, g1 = self.schedule.endpoints()
        out = {"loss": total.mean() / dims, "bpd": total.mean().detach() * to_bits}
        out.update({k: v.mean().detach() * to_bits for k, v in terms.items()})
        out.update({"gamma_0": g0.detach(), "gamma_1": g1.detach()})
        return out

    @torch.no_grad()
    def nll(self, x: torch.Tensor, k: int = 1) -> torch.Tensor:
        """bound - D ln L nats per image (see the module docstring); k > 1 averages k estimates of the bound."""
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}")
        if x.is_floating_point():
            raise ValueError("nll expects integer intensity levels (uint8 N x C x H x W), got floats: pass the "
                             "dataset's images, not u-space values")
        n, reps = x.shape[0], k * self.cfg.nll_samples
        with eval_mode(self):
            terms = self.bound_terms(x.repeat(reps, *([1] * (x.dim() - 1))))
        bound = sum(terms.values()).view(reps, n).mean(0)
        return bound - self.data.dims * math.log(self.data.levels)

    # ---- sampling ------------------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, n: int, labels: Optional[torch.Tensor] = None) -> torch.Tensor:
        if labels is not None:
            raise ValueError("vdm is unconditional: call sample(n) without labels")
        p = next(self.net.parameters())
        with eval_mode(self):
            z = torch.randn((n, *self.data.shape), device=p.device, dtype=p.dtype)
            z0 = ancestral_sample(z, self.cfg.sample_steps, self.schedule, self.eps_hat)
            k = decode_levels(z0, self.schedule.endpoints()[0], self.data.levels, self.cfg.sample_softmax)
        return (k.to(p.dtype) + 0.5) / self.data.levels


# ---- presets and registration ----------------------------------------------------------------------------
#: plain keys: VDMConfig fields; dotted keys: trainer / evaluation keys.  ``paper`` = the config defaults (VDM's
#: CIFAR-10 network) with VDM's optimiser settings where the suite's trainer has them (module docstring).
#: ``cpu`` is sized for 8x8 digits (1000 steps: about 100 s at 10 steps/s on one thread); ``cpu@32`` refines it
#: at 32x32 (its ``cpu@32`` preset): half the width, 1.4-2.4 steps/s on one thread (load).
#: ``paper``: 30.6M parameters; the backward pass keeps about 44 GB of float32 activations at batch 128 (measured
#: on CPU at batch 2): an 80 GB GPU, or half the batch on a 40 GB one.

register_model("vdm", config=VDMConfig, presets={
    # Adam as VDM; cpu = a small U-Net on digits, halved at 32x32; paper = VDM's CIFAR-10 optimiser at 200k steps
    # (VDM: 10M steps with EMA), one bound sample
    "smoke": {"ch": 8, "blocks": 1, "ch_mult": (1, 2), "attn_mid": True, "dropout": 0.0, "schedule_features": 16,
              "sample_steps": 4},
    "cpu": {"ch": 32, "blocks": 1, "ch_mult": (1, 2, 2), "attn_mid": True, "dropout": 0.0, "sample_steps": 100,
            "nll_samples": 4, "train.steps": 1000, "train.optimizer": "adam", "train.lr": 2e-3, "train.beta1": 0.9,
            "train.beta2": 0.99, "train.grad_clip": 1.0},
    "cpu@32": {"ch": 16, "nll_samples": 1},
    "paper": {"train.optimizer": "adam", "train.lr": 2e-4, "train.beta1": 0.9, "train.beta2": 0.99,
              "train.batch_size": 128, "train.steps": 200000, "train.grad_clip": 0.0, "eval.iw_k": 0}},
               description="Variational Diffusion Model (Kingma et al. 2021): continuous-"
               "time diffusion, learned schedule, discrete decoder, eps-prediction U-Net",
               paper="Kingma et al. 2021 (VDM), Table 1: 2.65 bpd on CIFAR-10")(VDM)
