"""Invertible building blocks: logit transform, squeeze, Real-NVP affine couplings, multi-scale f_psi.

Paper: Section 4 (f_psi, change of variables, Eq. 4), Appendix C ("three Real-NVP layers with a single
scale and two residual blocks", batch norm + weight norm "as in the reference implementations"),
Appendix F (number of scales / blocks).  Engineering spec: ``model-spec.md`` sections 1.2, 2, 11 (P1-P5).
References matched (read, not copied): Dinh et al. 2017 / tensorflow ``research/real_nvp``
(``masked_conv_aff_coupling``, logit pre-processing with ``data_constraint=0.9``) and
chrischute/real-nvp (``CouplingLayer``, ``ResNet``, ``_RealNVP``, ``squeeze_2x2``).

Conventions
* Every ``forward`` returns ``(y, logdet)`` with ``logdet`` of shape (N,), in nats; every ``inverse``
  returns the input.  Couplings use the references' "translate then scale" form
  ``y = (x + t) * exp(s)`` with ``s = scale * tanh(s_raw)`` and a per-channel ``scale`` initialised to 0,
  so every coupling is a pure translation at initialisation (spec 2.1, P3).
* BatchNorm inside the s/t networks (spec 2.2) makes train-mode outputs batch-dependent (P1): check
  invertibility and report likelihoods in ``eval()`` mode.  ``inverse`` always runs the s/t networks with
  BatchNorm in eval mode, so inverting samples never updates the running statistics (P2), and stays
  differentiable (AV-ADE back-propagates its adversarial loss through f^{-1}).
* Multi-scale (spec 2.4): a non-final scale applies checkerboard couplings, squeezes (C,H,W) ->
  (4C,H/2,W/2), applies channel-wise couplings, then factors out half of the channels: the kept half goes
  to the next scale (with doubled width, as chrischute), the other half is not transformed further.
  The output is reassembled to the input's shape.  The squeeze orders the four pixels of each 2x2 block
  as (0,0),(1,1),(0,1),(1,0), so each channel half is a checkerboard sub-lattice with all colours
  (chrischute's ``alt_order``).

Size of the default f_psi.  Section 5.1 says "1 scale, 3 residual blocks, 2 layers per block";
Appendix C says "three Real-NVP layers with a single scale and two residual blocks".  The default here is
Appendix C (``scales=1, couplings=3, blocks=2``) because the appendix is the more specific statement and
Appendix F says all main-body models use "a single scale and two residual blocks"; Section 5.1's reading
is ``blocks=3`` (the number of couplings is then unstated; ``couplings=3`` keeps the rest equal).
``mid`` (s/t width) is not given by the paper; 64 is the spec's decision (section 13, item 4).
"""
from __future__ import annotations

import contextlib
import math
from typing import Iterator, Optional, Tuple

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.parametrizations import weight_norm

__all__ = ["LogitTransform", "RealNVP", "CheckerboardCoupling", "ChannelCoupling", "STNet", "Squeeze",
           "squeeze", "unsqueeze", "checkerboard", "frozen_batchnorm", "standard_normal_logp"]

_ORDER = (0, 3, 1, 2)       # 2x2 block positions (0,0),(1,1),(0,1),(1,0) -> channel-group order
_INV_ORDER = (0, 2, 3, 1)


# ---- helpers -----------------------------------------------------------------------------------
@contextlib.contextmanager
def frozen_batchnorm(module: nn.Module) -> Iterator[None]:
    """Run every BatchNorm inside ``module`` in eval mode (running stats, no update), then restore."""
    bns = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    modes = [m.training for m in bns]
    for m in bns:
        m.train(False)
    try:
        yield
    finally:
        for m, mode in zip(bns, modes):
            m.train(mode)


def standard_normal_logp(y: torch.Tensor) -> torch.Tensor:
    """log N(y; 0, I) per sample (N,), in nats."""
    return -0.5 * (y * y + math.log(2 * math.pi)).flatten(1).sum(1)


def checkerboard(x: torch.Tensor, parity: int) -> torch.Tensor:
    """Mask b of shape (1,1,H,W) with b[i,j] = (i + j + parity) mod 2; b = 1 marks conditioning pixels."""
    h, w = x.shape[-2:]
    ij = torch.arange(h, device=x.device)[:, None] + torch.arange(w, device=x.device)[None, :]
    return ((ij + parity) % 2).to(x.dtype)[None, None]


class _MaskCache:
    """(b, 1 - b) of one parity, built once per (H, W, device, dtype) instead of at every call."""

    def __init__(self, parity: int):
        self.parity, self._masks = parity, {}

    def __call__(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        key = (tuple(x.shape[-2:]), x.device, x.dtype, torch.is_inference_mode_enabled())
        masks = self._masks.get(key)
        if masks is None:
            b = checkerboard(x, self.parity)
            masks = self._masks[key] = (b, 1 - b)
        return masks


def squeeze(x: torch.Tensor) -> torch.Tensor:
    """(N,C,H,W) -> (N,4C,H/2,W/2); channel = position-group * C + colour (a permutation: logdet 0)."""
    n, c, h, w = x.shape
    if h % 2 or w % 2:
        raise ValueError(f"squeeze needs an even height and width, got {h}x{w}: use fewer scales")
    x = x.reshape(n, c, h // 2, 2, w // 2, 2).permute(0, 3, 5, 1, 2, 4).reshape(n, 4, c, h // 2, w // 2)
    return x[:, list(_ORDER)].reshape(n, 4 * c, h // 2, w // 2)


def unsqueeze(x: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`squeeze`: (N,4C,H,W) -> (N,C,2H,2W)."""
    n, c4, h, w = x.shape
    if c4 % 4:
        raise ValueError(f"unsqueeze needs a multiple of 4 channels, got {c4}")
    x = x.reshape(n, 4, c4 // 4, h, w)[:, list(_INV_ORDER)]
    return x.reshape(n, 2, 2, c4 // 4, h, w).permute(0, 3, 4, 1, 5, 2).reshape(n, c4 // 4, 2 * h, 2 * w)


class Squeeze(nn.Module):
    """:func:`squeeze` as a flow layer (logdet 0)."""

    def forward(self, x):
        return squeeze(x), x.new_zeros(x.shape[0])

    def inverse(self, y):
        return unsqueeze(y)


def wn_conv(c_in: int, c_out: int, k: int, bias: bool = True) -> nn.Module:
    """Weight-normalised conv (g initialised to ||v||, PyTorch's default; spec P4), 'same' padding."""
    return weight_norm(nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=bias))


def _norm(c: int, bn: bool) -> nn.Module:
    return nn.BatchNorm2d(c) if bn else nn.Identity()


# ---- logit pre-processing --------------------------------------------------------------------------
class LogitTransform(nn.Module):
    """u in [0,1) -> l = logit(alpha + (1 - 2 alpha) u) (spec 1.2, P5; TF real_nvp data_constraint).

    The default alpha = 0.05 is the TF reference's ``data_constraint = 0.9``.  ``forward`` returns the
    per-sample log|det| = sum softplus(l) + softplus(-l) + log(1 - 2 alpha) (constant included).
    """

    def __init__(self, alpha: float = 0.05):
        super().__init__()
        if not 0.0 <= alpha < 0.5:
            raise ValueError(f"LogitTransform alpha must be in [0, 0.5), got {alpha}")
        self.alpha = float(alpha)

    def forward(self, u: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        s = self.alpha + (1.0 - 2.0 * self.alpha) * u
        l = torch.log(s) - torch.log1p(-s)
        ld = (F.softplus(l) + F.softplus(-l)).flatten(1).sum(1)
        return l, ld + l[0].numel() * math.log1p(-2.0 * self.alpha)

    def inverse(self, l: torch.Tensor) -> torch.Tensor:
        """(sigmoid(l) - alpha) / (1 - 2 alpha); range (-a/(1-2a), 1 + a/(1-2a)), not clamped."""
        return (torch.sigmoid(l) - self.alpha) / (1.0 - 2.0 * self.alpha)


# ---- s/t network -----------------------------------------------------------------------------------
class _ResBlock(nn.Module):
    """Pre-activation residual block, 2 conv layers (spec 2.2)."""

    def __init__(self, mid: int, bn: bool):
        super().__init__()
        self.norm1, self.conv1 = _norm(mid, bn), wn_conv(mid, mid, 3, bias=False)
        self.norm2, self.conv2 = _norm(mid, bn), wn_conv(mid, mid, 3, bias=True)

    def forward(self, h):
        r = self.conv1(F.relu(self.norm1(h)))
        return h + self.conv2(F.relu(self.norm2(r)))


class STNet(nn.Module):
    """ResNet with skip connections giving (t, s_raw) (spec 2.2; chrischute ``ResNet``, TF ``resnet``)."""

    def __init__(self, c_in: int, c_out: int, mid: int, blocks: int, double_after_norm: bool,
                 bn: bool = True):
        super().__init__()
        self.double = double_after_norm
        self.in_norm = _norm(c_in, bn)
        self.in_conv = wn_conv(2 * c_in, mid, 3)
        self.in_skip = wn_conv(mid, mid, 1)
        self.blocks = nn.ModuleList(_ResBlock(mid, bn) for _ in range(blocks))
        self.skips = nn.ModuleList(wn_conv(mid, mid, 1) for _ in range(blocks))
        self.out_norm = _norm(mid, bn)
        self.out_conv = wn_conv(mid, 2 * c_out, 1)

    def forward(self, x):
        x = self.in_norm(x)
        if self.double:
            x = 2.0 * x
        h = F.relu(torch.cat([x, -x], 1))
        if h.device.type == "cpu":   # oneDNN's narrow convs are 1.3-1.6x faster channels-last (benchmarks/README.md)
            h = h.contiguous(memory_format=torch.channels_last)
        h = self.in_conv(h)
        skip = self.in_skip(h)
        for block, conv in zip(self.blocks, self.skips):
            h = block(h)
            skip = skip + conv(h)
        return self.out_conv(F.relu(self.out_norm(skip)))


# ---- couplings -------------------------------------------------------------------------------------
class _Coupling(nn.Module):
    """Shared affine part: (t, s) from the s/t net, tanh-bounded s with a per-channel scale (init 0)."""

    def __init__(self, c_cond: int, c_out: int, mid: int, blocks: int, parity: int, bn: bool,
                 checker: bool):
        super().__init__()
        if blocks < 0 or mid < 1:
            raise ValueError(f"coupling needs mid >= 1 and blocks >= 0, got mid={mid}, blocks={blocks}")
        self.parity = int(parity) % 2
        self.net = STNet(c_cond, c_out, mid, blocks, double_after_norm=checker, bn=bn)
        self._masks = _MaskCache(self.parity)
        self.scale = nn.Parameter(torch.zeros(1, c_out, 1, 1))

    def _st(self, cond):
        t, s = self.net(cond).chunk(2, 1)
        return self.scale * torch.tanh(s), t


class CheckerboardCoupling(_Coupling):
    """Affine coupling with a checkerboard mask (spec 2.1): pixels with b = 1 condition the others."""

    def __init__(self, channels: int, mid: int, blocks: int, parity: int = 0, bn: bool = True):
        super().__init__(channels, channels, mid, blocks, parity, bn, checker=True)

    def _masked_st(self, x):
        b, nb = self._masks(x)
        s, t = self._st(x * b)
        return s * nb, t * nb

    def forward(self, x):
        s, t = self._masked_st(x)
        return (x + t) * torch.exp(s), s.flatten(1).sum(1)

    def inverse(self, y):
        with frozen_batchnorm(self.net):
            s, t = self._masked_st(y)          # y * b == x * b: the conditioning pixels are unchanged
        return y * torch.exp(-s) - t


class ChannelCoupling(_Coupling):
    """Affine coupling with a channel-wise mask: one half of the channels conditions the other."""

    def __init__(self, channels: int, mid: int, blocks: int, parity: int = 0, bn: bool = True):
        if channels % 2:
            raise ValueError(f"ChannelCoupling needs an even number of channels, got {channels}")
        super().__init__(channels // 2, channels // 2, mid, blocks, parity, bn, checker=False)

    def _split(self, x):
        a, b = x.chunk(2, 1)
        return (b, a) if self.parity else (a, b)       # (conditioning half, changing half)

    def _join(self, cond, changed):
        return torch.cat([changed, cond] if self.parity else [cond, changed], 1)

    def forward(self, x):
        cond, x_c = self._split(x)
        s, t = self._st(cond)
        return self._join(cond, (x_c + t) * torch.exp(s)), s.flatten(1).sum(1)

    def inverse(self, y):
        cond, y_c = self._split(y)
        with frozen_batchnorm(self.net):
            s, t = self._st(cond)
        return self._join(cond, y_c * torch.exp(-s) - t)


# ---- multi-scale Real-NVP --------------------------------------------------------------------------
class _Scale(nn.Module):
    """One scale: checkerboard couplings [, squeeze, channel couplings, factor-out, next scale]."""

    def __init__(self, channels, mid, blocks, couplings, final_couplings, scales_left, bn):
        super().__init__()
        last = scales_left == 1
        n_checker = final_couplings if last else couplings
        self.checker = nn.ModuleList(CheckerboardCoupling(channels, mid, blocks, i % 2, bn)
                                     for i in range(n_checker))
        self.channel = nn.ModuleList() if last else nn.ModuleList(
            ChannelCoupling(4 * channels, 2 * mid, blocks, i % 2, bn) for i in range(couplings))
        self.next = None if last else _Scale(2 * channels, 2 * mid, blocks, couplings, final_couplings,
                                             scales_left - 1, bn)

    def forward(self, x):
        logdet = x.new_zeros(x.shape[0])
        for layer in self.checker:
            x, ld = layer(x)
            logdet = logdet + ld
        if self.next is None:
            return x, logdet
        x = squeeze(x)
        for layer in self.channel:
            x, ld = layer(x)
            logdet = logdet + ld
        keep, out = x.chunk(2, 1)               # `out` is factored out: not transformed further
        keep, ld = self.next(keep)
        return unsqueeze(torch.cat([keep, out], 1)), logdet + ld

    def inverse(self, y):
        if self.next is not None:
            keep, out = squeeze(y).chunk(2, 1)
            y = torch.cat([self.next.inverse(keep), out], 1)
            for layer in reversed(self.channel):
                y = layer.inverse(y)
            y = unsqueeze(y)
        for layer in reversed(self.checker):
            y = layer.inverse(y)
        return y


class ShapedFlow(nn.Module):
    """A flow for one input shape: checks it, then delegates to ``self.body`` (forward -> (y, logdet))."""

    shape: Tuple[int, int, int]
    body: nn.Module

    def _check(self, x):
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"{type(self).__name__} built for inputs N x {self.shape}, got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        self._check(x)
        return self.body(x)

    def inverse(self, y: torch.Tensor) -> torch.Tensor:
        """f^{-1}(y), differentiable; BatchNorm in eval mode, running statistics untouched (P2)."""
        self._check(y)
        return self.body.inverse(y)


class RealNVP(ShapedFlow):
    """f_psi: invertible map R^{C x H x W} -> R^{C x H x W} (Dinh et al. 2017; spec 2.4).

    ``couplings`` checkerboard couplings per scale (alternating masks), and at each non-final scale as
    many channel-wise couplings after the squeeze; ``final_couplings`` (default ``couplings``) sets the
    number at the last scale (the reference CIFAR model has 4).  Width ``mid`` doubles at each scale.
    ``bn_in_st`` toggles the BatchNorm layers inside the s/t networks (the references use them).
    """

    def __init__(self, channels: int, resolution: int, scales: int = 1, blocks: int = 2, mid: int = 64,
                 couplings: int = 3, bn_in_st: bool = True, final_couplings: Optional[int] = None):
        super().__init__()
        final_couplings = couplings if final_couplings is None else final_couplings
        if channels < 1 or scales < 1 or couplings < 1 or final_couplings < 1:
            raise ValueError(f"RealNVP needs channels, scales, couplings >= 1; got channels={channels}, "
                             f"scales={scales}, couplings={couplings}, final_couplings={final_couplings}")
        factor = 2 ** (scales - 1)
        if resolution % factor or resolution // factor < 2:
            raise ValueError(f"RealNVP with {scales} scales needs a resolution divisible by {factor} and at "
                             f"least {2 * factor}, got {resolution}: use fewer scales")
        self.shape = (channels, resolution, resolution)
        self.body = _Scale(channels, mid, blocks, couplings, final_couplings, scales, bn_in_st)
