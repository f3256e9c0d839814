"""Glow blocks (Kingma & Dhariwal 2018): ActNorm, invertible 1x1 convolution (LU), affine coupling,
multi-scale Glow with squeeze and split.

The paper compares against Glow in Table 3 (BPD 3.4, IS/FID retrained "using provided code") and
Appendix E (precision-recall).  References matched (read, not copied): openai/glow ``model.py``
(``actnorm``, ``invertible_1x1_conv`` LU variant, ``affine_coupling`` with ``sigmoid(h + 2)``,
``split2d`` learned prior, ``f`` with zero-initialised last conv scaled by ``exp(3 logs)``) and
rosinality/glow-pytorch ``model.py``.

API as :class:`models.flows.RealNVP`: ``forward(x) -> (y, logdet)`` with ``logdet`` (N,) in nats, y of
the input's shape, and ``inverse(y) -> x``.  The split's learned prior N(z2; m(z1), exp(logs(z1))^2) is
written as the affine flow ``eps = (z2 - m) * exp(-logs)`` (logdet ``-sum logs``), so that the model's
base density is N(0, I) on all of y, exactly as for Real-NVP; with ``learned_prior=False`` the split
is the identity (an N(0, 1) prior on the factored dims).

ActNorm uses a data-dependent initialisation on its first forward call (per-channel zero mean, unit
variance); the flag is a buffer, so it survives ``state_dict`` round trips.  Run a forward pass on a
data batch (the first training step does) before sampling: an uninitialised ActNorm is the identity.
"""
from __future__ import annotations

from typing import Tuple

import torch
import torch.nn.functional as F
from torch import nn

from .flows import ShapedFlow, squeeze, unsqueeze

__all__ = ["ActNorm", "InvConv1x1", "GlowCoupling", "FlowStep", "Split", "Glow"]


class ActNorm(nn.Module):
    """y = (x + b) * exp(logs), per channel; logdet = H W sum(logs)."""

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))

    @torch.no_grad()
    def _initialize(self, x):
        if x.shape[0] * x.shape[2] * x.shape[3] < 2:
            raise ValueError("ActNorm's data-dependent init needs >= 2 values per channel: run the first "
                             "forward pass on a batch of more than one image")
        mean = x.mean((0, 2, 3), keepdim=True)
        std = x.std((0, 2, 3), keepdim=True, unbiased=False)
        self.bias.copy_(-mean)
        self.logs.copy_(-torch.log(std + 1e-6))
        self.initialized.fill_(True)

    def forward(self, x) -> Tuple[torch.Tensor, torch.Tensor]:
        if not bool(self.initialized):
            self._initialize(x)
        logdet = self.logs.sum() * (x.shape[2] * x.shape[3])
        return (x + self.bias) * torch.exp(self.logs), logdet.expand(x.shape[0])

    def inverse(self, y):
        return y * torch.exp(-self.logs) - self.bias


class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution, W = P L (U + diag(sign(s) exp(log|s|))), initialised orthogonal."""

    def __init__(self, channels: int):
        super().__init__()
        q = torch.linalg.qr(torch.randn(channels, channels))[0]
        p, lower, upper = torch.linalg.lu(q)
        s = torch.diagonal(upper)
        self.register_buffer("p", p)
        self.register_buffer("sign_s", torch.sign(s))
        self.register_buffer("l_mask", torch.tril(torch.ones(channels, channels), -1))
        self.lower = nn.Parameter(lower)
        self.upper = nn.Parameter(torch.triu(upper, 1))
        self.log_s = nn.Parameter(torch.log(torch.abs(s)))

    def weight(self) -> torch.Tensor:
        eye = torch.eye(self.p.shape[0], dtype=self.p.dtype, device=self.p.device)
        lower = self.lower * self.l_mask + eye
        upper = self.upper * self.l_mask.T + torch.diag(self.sign_s * torch.exp(self.log_s))
        return self.p @ lower @ upper

    def forward(self, x):
        y = F.conv2d(x, self.weight()[:, :, None, None])
        logdet = self.log_s.sum() * (x.shape[2] * x.shape[3])
        return y, logdet.expand(x.shape[0])

    def inverse(self, y):
        return F.conv2d(y, torch.linalg.inv(self.weight())[:, :, None, None])


class ZeroConv2d(nn.Module):
    """3x3 conv initialised to zero, output scaled by exp(3 logs) (Glow's ``conv2d_zeros``)."""

    def __init__(self, c_in: int, c_out: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, 3, padding=1)
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)
        self.logs = nn.Parameter(torch.zeros(1, c_out, 1, 1))

    def forward(self, x):
        return self.conv(x) * torch.exp(3.0 * self.logs)


class _ConvActNorm(nn.Module):
    """Conv (no bias) followed by ActNorm and ReLU: the hidden layers of Glow's coupling network."""

    def __init__(self, c_in: int, c_out: int, k: int):
        super().__init__()
        self.conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
        nn.init.normal_(self.conv.weight, 0.0, 0.05)
        self.norm = ActNorm(c_out)

    def forward(self, x):
        return F.relu(self.norm(self.conv(x))[0])


class GlowCoupling(nn.Module):
    """Affine coupling: x_b -> (x_b + t(x_a)) * sigmoid(h(x_a) + 2); logdet = sum log sigmoid(h + 2)."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        if channels % 2:
            raise ValueError(f"GlowCoupling needs an even number of channels, got {channels}")
        self.net = nn.Sequential(_ConvActNorm(channels // 2, hidden, 3), _ConvActNorm(hidden, hidden, 1),
                                 ZeroConv2d(hidden, channels))

    def _st(self, x_a):
        h = self.net(x_a)
        return h[:, 0::2], h[:, 1::2] + 2.0          # shift, pre-sigmoid scale (openai's cross split)

    def forward(self, x):
        x_a, x_b = x.chunk(2, 1)
        t, raw = self._st(x_a)
        y_b = (x_b + t) * torch.sigmoid(raw)
        return torch.cat([x_a, y_b], 1), F.logsigmoid(raw).flatten(1).sum(1)

    def inverse(self, y):
        y_a, y_b = y.chunk(2, 1)
        t, raw = self._st(y_a)
        return torch.cat([y_a, y_b / torch.sigmoid(raw) - t], 1)


class FlowStep(nn.Module):
    """ActNorm -> invertible 1x1 conv -> affine coupling."""

    def __init__(self, channels: int, hidden: int):
        super().__init__()
        self.layers = nn.ModuleList([ActNorm(channels), InvConv1x1(channels), GlowCoupling(channels, hidden)])

    def forward(self, x):
        logdet = x.new_zeros(x.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y):
        for layer in reversed(self.layers):
            y = layer.inverse(y)
        return y


class Split(nn.Module):
    """Factor-out half of the channels; with a learned prior, z2 -> (z2 - m(z1)) exp(-logs(z1))."""

    def __init__(self, channels: int, learned_prior: bool = True):
        super().__init__()
        self.prior = ZeroConv2d(channels // 2, channels) if learned_prior else None

    def _stats(self, z1):
        h = self.prior(z1)
        return h[:, 0::2], h[:, 1::2]

    def forward(self, z1, z2):
        if self.prior is None:
            return z2, z2.new_zeros(z2.shape[0])
        m, logs = self._stats(z1)
        return (z2 - m) * torch.exp(-logs), -logs.flatten(1).sum(1)

    def inverse(self, z1, eps):
        if self.prior is None:
            return eps
        m, logs = self._stats(z1)
        return eps * torch.exp(logs) + m


class _Level(nn.Module):
    """squeeze -> depth flow steps [-> split, next level]."""

    def __init__(self, channels, depth, hidden, levels_left, learned_prior):
        super().__init__()
        self.steps = nn.ModuleList(FlowStep(4 * channels, hidden) for _ in range(depth))
        last = levels_left == 1
        self.split = None if last else Split(4 * channels, learned_prior)
        self.next = None if last else _Level(2 * channels, depth, hidden, levels_left - 1, learned_prior)

    def forward(self, x):
        x = squeeze(x)
        logdet = x.new_zeros(x.shape[0])
        for step in self.steps:
            x, ld = step(x)
            logdet = logdet + ld
        if self.next is not None:
            z1, z2 = x.chunk(2, 1)
            eps, ld_split = self.split(z1, z2)
            z1, ld_next = self.next(z1)
            x, logdet = torch.cat([z1, eps], 1), logdet + ld_split + ld_next
        return unsqueeze(x), logdet

    def inverse(self, y):
        y = squeeze(y)
        if self.next is not None:
            z1, eps = y.chunk(2, 1)
            z1 = self.next.inverse(z1)
            y = torch.cat([z1, self.split.inverse(z1, eps)], 1)
        for step in reversed(self.steps):
            y = step.inverse(y)
        return unsqueeze(y)


class Glow(ShapedFlow):
    """Multi-scale Glow: ``levels`` x (squeeze, ``depth`` flow steps, split); width ``hidden``."""

    def __init__(self, channels: int, resolution: int, levels: int = 3, depth: int = 32, hidden: int = 512,
                 learned_prior: bool = True):
        super().__init__()
        if channels < 1 or levels < 1 or depth < 1 or hidden < 1:
            raise ValueError(f"Glow needs channels, levels, depth, hidden >= 1; got {channels}, {levels}, "
                             f"{depth}, {hidden}")
        if resolution % (2 ** levels):
            raise ValueError(f"Glow with {levels} levels needs a resolution divisible by {2 ** levels}, got "
                             f"{resolution}: use fewer levels")
        self.shape = (channels, resolution, resolution)
        self.body = _Level(channels, depth, hidden, levels, learned_prior)
