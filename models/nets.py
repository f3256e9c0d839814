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
import torch.nn.functional as F
from torch import nn

from .discriminators import n_octaves
from .layers import WNConv2d, WNConvTranspose2d, WNLinear

OUTPUT_ACTIVATIONS = ("tanh", "identity")
LOG_2PI = math.log(2 * math.pi)


def resolutions(resolution: int) -> List[int]:
    """[4, 8, ..., resolution]: the feature-map sizes of the nets (validates the resolution)."""
    return [4 * 2 ** i for i in range(n_octaves(resolution) + 1)]


def channels_at(r: int, resolution: int, width: int) -> int:
    """Channel count at feature size ``r``: ``width`` at full resolution, doubling per octave, <= 8x."""
    return width * min(resolution // r, 8)


class Generator(nn.Module):
    """SNGAN standard-CNN generator z -> image in [-1, 1] (tanh) or unbounded (identity)."""

    def __init__(self, channels: int, resolution: int, z_dim: int = 128, width: int = 64,
                 norm: str = "bn", out_act: str = "tanh"):
        super().__init__()
        if norm not in ("bn", "wn"):
            raise ValueError(f"generator norm must be 'bn' or 'wn', got {norm!r}")
        if out_act not in OUTPUT_ACTIVATIONS:
            raise ValueError(f"out_act must be one of {OUTPUT_ACTIVATIONS}, got {out_act!r}")
        rs = resolutions(resolution)
        chans = [channels_at(r, resolution, width) for r in rs]
        self.z_dim, self.out_act, self.c0 = z_dim, out_act, chans[0]
        bn = norm == "bn"
        lin, convt, conv = (nn.Linear, nn.ConvTranspose2d, nn.Conv2d) if bn else \
            (WNLinear, WNConvTranspose2d, WNConv2d)
        self.fc = lin(z_dim, chans[0] * 16)
        self.fc_norm = nn.BatchNorm1d(chans[0] * 16) if bn else nn.Identity()
        self.ups = nn.ModuleList(convt(a, b, 4, 2, 1) for a, b in zip(chans[:-1], chans[1:]))
        self.norms = nn.ModuleList((nn.BatchNorm2d(b) if bn else nn.Identity()) for b in chans[1:])
        self.out = conv(chans[-1], channels, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = F.elu(self.fc_norm(self.fc(z))).view(z.shape[0], self.c0, 4, 4)
        for up, norm in zip(self.ups, self.norms):
            h = F.elu(norm(up(h)))
        x = self.out(h)
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
        self.top = WNLinear(chans[-1] * 16, 2 * z_dim, init_scale=0.1)
        self.feature_channels: Dict[int, int] = dict(zip(rs[1:], chans[1:]))

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor, Dict[int, torch.Tensor]]:
        h = F.elu(self.stem(x))
        feats: Dict[int, torch.Tensor] = {}
        for r, down, conv in zip(self.rs, self.downs, self.convs):
            h = F.elu(conv(F.elu(down(h))))
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

