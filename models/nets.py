"""The SNGAN "standard CNN" generator and the bottom-up encoder, resolution generic.

* :class:`Generator` (paper Section 5.1: "the non-residual architecture of SNGAN [37] ...
  without spectral normalization"; Miyato et al. 2018 Table 3a, pfnet chainer-gan-lib
  ``DCGANGenerator``): ``z -> dense -> 4x4``, one ``ConvT(k4, s2, p1)`` per octave up to the
  resolution (``log2(res / 4)`` of them), ``conv3x3 -> tanh``.  ELU replaces ReLU (Appendix C).
  Normalisation: batch norm as in SNGAN (``norm="bn"``, the GAN baseline) or weight norm
  (``norm="wn"``).  At 32x32 with ``width=64`` the channels are 512, 256, 128, 64 (3.81 M params).
* :class:`Encoder` (spec section 4; the mirror of the standard-CNN discriminator with WN convs and
  ELU): ``conv3x3``, then per octave ``conv4x4/s2`` + ``conv3x3``; returns the features at every
  resolution from ``res/2`` down to 4 (for the top-down posteriors) and the Gaussian parameters
  ``(m0, log sigma0)`` of the top latent from a dense layer on the 4x4 features.

Channel plan shared by every net here: ``channels_at(r) = width * min(res / r, 8)``.
"""
from __future__ import annotations

import math
from typing import Dict, List, Optional, Tuple

import torch
from torch import nn

from .discriminators import base_size, n_octaves
from .layers import WNConv2d, WNConvTranspose2d, WNLinear, elu

OUTPUT_ACTIVATIONS = ("tanh", "identity")
LOG_2PI = math.log(2 * math.pi)


def resolutions(resolution: int) -> List[int]:
    """[4, 8, ..., resolution]: the feature-map sizes of the nets (validates the resolution)."""
    return [base_size(resolution) * 2 ** i for i in range(n_octaves(resolution) + 1)]


def channels_at(r: int, resolution: int, width: int) -> int:
    """Channel count at feature size ``r``: ``width`` at full resolution, doubling per octave, <= 8x."""
    return width * min(resolution // r, 8)


class ConditionalBatchNorm(nn.Module):
    """Batch norm whose gain and bias depend on the class (de Vries et al. 2017; Miyato & Koyama 2018).

    With one class it is plain affine batch norm (gain 1, bias 0 at init)."""

    def __init__(self, num_features: int, n_classes: int, dims: int = 2):
        super().__init__()
        self.bn = (nn.BatchNorm2d if dims == 2 else nn.BatchNorm1d)(num_features, affine=False)
        self.gain = nn.Embedding(n_classes, num_features)
        self.bias = nn.Embedding(n_classes, num_features)
        nn.init.ones_(self.gain.weight)
        nn.init.zeros_(self.bias.weight)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        shape = (x.shape[0], -1) + (1,) * (x.dim() - 2)
        return self.bn(x) * self.gain(y).view(shape) + self.bias(y).view(shape)


class Generator(nn.Module):
    """SNGAN standard-CNN generator z -> image in [-1, 1] (tanh) or unbounded (identity).

    ``n_classes > 0`` makes it class-conditional: conditional batch norm (``norm="bn"``, the
    usual conditional GAN) or conditional weight norm (``norm="wn"``, paper Eq. 16)."""

    def __init__(self, channels: int, resolution: int, z_dim: int = 128, width: int = 64,
                 norm: str = "bn", out_act: str = "tanh", n_classes: int = 0):
        super().__init__()
        if norm not in ("bn", "wn"):
            raise ValueError(f"generator norm must be 'bn' or 'wn', got {norm!r}")
        if out_act not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"out_act must be one of {OUTPUT_ACTIVATIONS}, got {out_act!r}")
        rs = resolutions(resolution)
        chans = [channels_at(r, resolution, width) for r in rs]
        self.z_dim, self.out_act, self.c0, self.base = z_dim, out_act, chans[0], rs[0]
        bn = norm == "bn"
        self.n_classes, self.bn = n_classes, bn
        if bn:
            self.fc = nn.Linear(z_dim, chans[0] * rs[0] ** 2)
            self.ups = nn.ModuleList(nn.ConvTranspose2d(a, b, 4, 2, 1) for a, b in zip(chans[:-1], chans[1:]))
            self.out = nn.Conv2d(chans[-1], channels, 3, 1, 1)
            if n_classes:
                self.fc_norm = ConditionalBatchNorm(chans[0] * rs[0] ** 2, n_classes, dims=1)
                self.norms = nn.ModuleList(ConditionalBatchNorm(b, n_classes) for b in chans[1:])
            else:
                self.fc_norm = nn.BatchNorm1d(chans[0] * rs[0] ** 2)
                self.norms = nn.ModuleList(nn.BatchNorm2d(b) for b in chans[1:])
        else:
            self.fc = WNLinear(z_dim, chans[0] * rs[0] ** 2, n_classes=n_classes)
            self.ups = nn.ModuleList(WNConvTranspose2d(a, b, 4, 2, 1, n_classes=n_classes)
                                     for a, b in zip(chans[:-1], chans[1:]))
            self.out = WNConv2d(chans[-1], channels, 3, 1, 1, n_classes=n_classes)
            self.fc_norm = nn.Identity()
            self.norms = nn.ModuleList(nn.Identity() for _ in chans[1:])

    def _layer(self, layer: nn.Module, h: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        return layer(h) if (self.bn or not self.n_classes) else layer(h, y)

    def _norm(self, norm: nn.Module, h: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        return norm(h, y) if (self.bn and self.n_classes) else norm(h)

    def forward(self, z: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if self.n_classes and y is None:
            raise ValueError("this generator is class-conditional: pass labels y (int64, shape [N])")
        h = elu(self._norm(self.fc_norm, self._layer(self.fc, z, y), y)).view(z.shape[0], self.c0, self.base, self.base)
        for up, norm in zip(self.ups, self.norms):
            h = elu(self._norm(norm, self._layer(up, h, y), y))
        x = self._layer(self.out, h, y)
        return torch.tanh(x) if self.out_act == "tanh" else x


class Encoder(nn.Module):
    """Bottom-up WN-conv encoder: features at res/2 .. 4 and the top latent's (m0, log sigma0)."""

    def __init__(self, channels: int, resolution: int, width: int = 64, z_dim: int = 128):
        super().__init__()
        rs = resolutions(resolution)[::-1]            # [res, res/2, ..., 4]
        chans = [channels_at(r, resolution, width) for r in rs]
        self.rs = rs[1:]
        self.stem = WNConv2d(channels, chans[0], 3, 1, 1)
        self.downs = nn.ModuleList(WNConv2d(a, a, 4, 2, 1) for a in chans[:-1])
        self.convs = nn.ModuleList(WNConv2d(a, b, 3, 1, 1) for a, b in zip(chans[:-1], chans[1:]))
        self.top = WNLinear(chans[-1] * rs[-1] ** 2, 2 * z_dim, init_scale=0.1)
        self.feature_channels: Dict[int, int] = dict(zip(rs[1:], chans[1:]))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Dict[int, torch.Tensor]]:
        h = elu(self.stem(x))
        feats: Dict[int, torch.Tensor] = {}
        for r, down, conv in zip(self.rs, self.downs, self.convs):
            h = elu(conv(elu(down(h))))
            feats[r] = h
        m0, ls0 = self.top(h.flatten(1)).chunk(2, dim=1)
        return m0, ls0, feats


def gaussian_log_density(x: torch.Tensor, mean: torch.Tensor, log_std: torch.Tensor) -> torch.Tensor:
    """Sum over all but the batch dim of log N(x; mean, exp(log_std)^2) (spec section 5.1 form)."""
    t = (x - mean) * torch.exp(-log_std)
    lp = -0.5 * LOG_2PI - log_std - 0.5 * t * t
    return lp.flatten(1).sum(dim=1)


def kl_normal(m: torch.Tensor, ls: torch.Tensor, pm: Optional[torch.Tensor] = None,
              pls: Optional[torch.Tensor] = None) -> torch.Tensor:
    """Analytic KL(N(m, e^{2 ls}) || N(pm, e^{2 pls})) summed per sample (prior N(0, 1) if omitted)."""
    if pm is None:
        pm, pls = torch.zeros_like(m), torch.zeros_like(ls)
    kl = (pls - ls) + 0.5 * (torch.exp(2 * (ls - pls)) + ((m - pm) * torch.exp(-pls)) ** 2) - 0.5
    return kl.flatten(1).sum(dim=1)

