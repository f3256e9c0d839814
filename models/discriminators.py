"""Discriminators: the simple CNN, the residual D ("rd"), and projection conditioning.

All return one logit ``a(x)`` per image (D = sigmoid(a)), take images in [-1, 1], and use
neither batch norm nor spectral norm: the gradient penalty of Eq. 11-13 (coefficient 100,
paper Appendix C) regularises them, and batch norm would make that penalty ill-defined.

* :class:`SimpleD`: the SNGAN "standard CNN" discriminator (Miyato et al. 2018, Table 3b;
  channel plan 64,64,128,128,256,256,512 at 32x32) with leaky ReLU of slope 0.2 (Appendix C).
* :class:`ResidualD`: the paper's residual discriminator of Table 6 (conv3x3 16; ResBlock 32;
  ResBlock down 64, 128, 256; average pooling; dense 1) with ReLU (Appendix C), pre-activation
  blocks as in pfnet-research/sngan_projection ``resblocks.py``.
* Projection conditioning (Miyato & Koyama 2018, used in Appendix E.1):
  ``a(x, y) = w^T phi(x) + <embed(y), phi(x)>`` on the final feature vector ``phi``.

Both are resolution generic: one down-sampling step per octave from ``resolution`` to 4x4
(``log2(resolution / 4)`` of them), widths capped at 8x (simple) / 16x (residual) the base.
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F
from torch import nn


#: supported resolutions: powers of two from a 4x4 base, and 48 / 96 from a 6x6 base (STL-10 at the
#: paper's 48x48, like SNGAN's STL-10 nets)
RESOLUTIONS = (8, 16, 32, 64, 128, 12, 24, 48, 96)


def base_size(resolution: int) -> int:
    """Side of the smallest feature map: 4 for powers of two, 6 for 3 * 2^k (48x48 STL-10)."""
    n_octaves(resolution)
    return 4 if resolution & (resolution - 1) == 0 else 6


def n_octaves(resolution: int) -> int:
    """Number of 2x up/down steps between the base map (4x4 or 6x6) and ``resolution``."""
    if resolution not in RESOLUTIONS:
        raise ValueError(f"resolution must be a power of two from 8 to 128, or 12/24/48/96, got {resolution} "
                         f"(resize the data, e.g. folder:PATH@64)")
    base = 4 if resolution & (resolution - 1) == 0 else 6
    return (resolution // base).bit_length() - 1


class _Projection(nn.Module):
    """Final dense logit plus the class projection term when ``n_classes > 0``."""

    def __init__(self, features: int, n_classes: int):
        super().__init__()
        self.n_classes = n_classes
        self.linear = nn.Linear(features, 1)
        self.embed = nn.Embedding(n_classes, features) if n_classes else None
        if self.embed is not None:
            nn.init.xavier_uniform_(self.embed.weight)

    def forward(self, phi: torch.Tensor, y: Optional[torch.Tensor]) -> torch.Tensor:
        out = self.linear(phi).squeeze(1)
        if self.embed is None:
            return out
        if y is None:
            raise ValueError("this discriminator is class-conditional: pass labels y (int64, shape [N])")
        return out + (self.embed(y) * phi).sum(dim=1)


class SimpleD(nn.Module):
    """SNGAN standard CNN D: conv3x3, then per octave conv4x4/s2 + conv3x3 (doubling), dense."""

    def __init__(self, channels: int, resolution: int, width: int = 64, n_classes: int = 0):
        super().__init__()
        n = n_octaves(resolution)
        widths = [width * min(2 ** i, 8) for i in range(n + 1)]
        layers = [nn.Conv2d(channels, widths[0], 3, 1, 1)]
        for c_in, c_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Conv2d(c_in, c_in, 4, 2, 1), nn.Conv2d(c_in, c_out, 3, 1, 1)]
        self.convs = nn.ModuleList(layers)
        self.head = _Projection(widths[-1] * base_size(resolution) ** 2, n_classes)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = x
        for conv in self.convs:
            h = F.leaky_relu(conv(h), 0.2)
        return self.head(h.flatten(1), y)


class ResBlock(nn.Module):
    """Pre-activation residual block: x + conv3x3(relu(conv3x3(relu(x)))), optional 2x avg-pool."""

    def __init__(self, c_in: int, c_out: int, down: bool, first: bool = False):
        super().__init__()
        self.down, self.first = down, first
        self.conv1 = nn.Conv2d(c_in, c_out, 3, 1, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        self.shortcut = nn.Conv2d(c_in, c_out, 1) if (c_in != c_out or down) else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x if self.first else F.relu(x)
        h = self.conv2(F.relu(self.conv1(h)))
        sc = x if self.shortcut is None else self.shortcut(x)
        if self.down:
            h, sc = F.avg_pool2d(h, 2), F.avg_pool2d(sc, 2)
        return h + sc


class ResidualD(nn.Module):
    """The paper's Table 6 residual D: conv3x3 w; ResBlock 2w; ResBlock-down 4w, 8w, ...; pool; dense."""

    def __init__(self, channels: int, resolution: int, width: int = 16, n_classes: int = 0):
        super().__init__()
        n = n_octaves(resolution)
        widths = [width * min(2 ** (i + 1), 16) for i in range(n + 1)]
        self.stem = nn.Conv2d(channels, width, 3, 1, 1)
        blocks = [ResBlock(width, widths[0], down=False)]
        blocks += [ResBlock(c_in, c_out, down=True) for c_in, c_out in zip(widths[:-1], widths[1:])]
        self.blocks = nn.Sequential(*blocks)
        self.head = _Projection(widths[-1], n_classes)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        h = F.relu(self.blocks(self.stem(x)))
        return self.head(h.mean(dim=(2, 3)), y)


DISCRIMINATORS = {"simple": SimpleD, "rd": ResidualD}


def build_discriminator(kind: str, channels: int, resolution: int, width: int, n_classes: int = 0) -> nn.Module:
    """``kind`` is "simple" (SNGAN standard CNN) or "rd" (the paper's residual D, Table 6)."""
    if kind not in DISCRIMINATORS:
        raise ValueError(f"unknown discriminator {kind!r}; use one of: {', '.join(DISCRIMINATORS)}")
    return DISCRIMINATORS[kind](channels, resolution, width, n_classes)
