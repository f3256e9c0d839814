"""Weight-normalised and conditionally weight-normalised layers, plus module-state helpers.

Weight normalisation (Salimans & Kingma, 2016): ``w = g * v / ||v||`` with the norm taken per
*output* unit, i.e. over every weight dimension except the output one.  ``nn.Linear`` and
``nn.Conv2d`` keep outputs on dim 0; ``nn.ConvTranspose2d`` keeps them on dim 1, so its norm
runs over dims (0, 2, 3) (``torch.nn.utils.weight_norm`` gets this wrong with its default
``dim=0``; spec pitfall P4).

Conditional weight normalisation (paper Appendix E.1, Eq. 16): ``w = g(y) / ||v|| * v`` with a
gain *and* a bias per class, ``out(x, y) = g[y] * op(x, v / ||v||) + b[y]``, which equals
convolving with ``w_y`` without materialising a weight per sample.  With ``n_classes = 0`` a
layer is plain weight normalisation; with one class it computes exactly the same function.

Initialisation: ``v`` ~ N(0, 1) and ``g = init_scale`` (times the stride for transposed convs,
whose outputs see only 1/stride^2 of the kernel taps), so each unit starts with a weight vector of
norm ``init_scale`` and roughly preserves the input variance; heads use a small ``init_scale``
so that KL terms start near zero (openai/iaf uses ``init_scale = 0.1``).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn


class _WeightNorm(nn.Module):
    """Shared parameters and the forward rule; subclasses supply ``_op`` and the output dim."""

    out_dim = 0

    def __init__(self, weight_shape, bias: bool, n_classes: int, init_scale: float):
        super().__init__()
        if n_classes < 0:
            raise ValueError(f"n_classes must be >= 0, got {n_classes}")
        self.n_classes = n_classes
        self.v = nn.Parameter(torch.randn(weight_shape))
        n_out = weight_shape[self.out_dim]
        shape = (n_classes, n_out) if n_classes else (n_out,)
        self.g = nn.Parameter(torch.full(shape, float(init_scale)))
        self.b = nn.Parameter(torch.zeros(shape)) if bias else None

    def direction(self) -> torch.Tensor:
        """v / ||v|| with the norm over every dim except the output one."""
        dims = [d for d in range(self.v.dim()) if d != self.out_dim]
        return self.v * torch.rsqrt(self.v.pow(2).sum(dim=dims, keepdim=True) + 1e-12)

    def weight(self) -> torch.Tensor:
        """The effective weight of an unconditional layer."""
        if self.n_classes:
            raise ValueError("a conditional layer has one weight per class; call it with labels instead")
        view = [1] * self.v.dim()
        view[self.out_dim] = -1
        return self.g.view(view) * self.direction()

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None) -> torch.Tensor:
        if not self.n_classes:
            return self._op(x, self.weight(), self.b)
        if y is None:
            raise ValueError(f"{type(self).__name__} is class-conditional: pass labels y (int64, shape [N])")
        out = self._op(x, self.direction(), None)
        view = (out.shape[0], out.shape[1]) + (1,) * (out.dim() - 2)
        out = out * self.g[y].view(view)
        return out if self.b is None else out + self.b[y].view(view)

    def _op(self, x, w, b):  # pragma: no cover - abstract
        raise NotImplementedError


class WNLinear(_WeightNorm):
    def __init__(self, n_in: int, n_out: int, bias: bool = True, n_classes: int = 0, init_scale: float = 1.0):
        super().__init__((n_out, n_in), bias, n_classes, init_scale)

    def _op(self, x, w, b):
        return F.linear(x, w, b)


class WNConv2d(_WeightNorm):
    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, n_classes: int = 0, init_scale: float = 1.0):
        super().__init__((n_out, n_in, kernel, kernel), bias, n_classes, init_scale)
        self.stride, self.padding = stride, padding

    def _op(self, x, w, b):
        return F.conv2d(x, w, b, self.stride, self.padding)


class WNConvTranspose2d(_WeightNorm):
    """Transposed conv: weight layout (in, out, kh, kw), normalised over dims (0, 2, 3)."""

    out_dim = 1

    def __init__(self, n_in: int, n_out: int, kernel: int, stride: int = 1, padding: int = 0,
                 bias: bool = True, n_classes: int = 0, init_scale: float = 1.0):
        super().__init__((n_in, n_out, kernel, kernel), bias, n_classes, init_scale * stride)
        self.stride, self.padding = stride, padding

    def _op(self, x, w, b):
        return F.conv_transpose2d(x, w, b, self.stride, self.padding)


def ar_mask(n_in: int, n_out: int, kernel: int, zerodiag: bool) -> torch.Tensor:
    """Autoregressive conv mask (out, in, k, k) over raster order, then channel groups at the centre.

    The mirror image of openai/iaf ``get_conv_ar_mask`` (which reads below/right; either raster
    order is autoregressive): taps below the centre row and right of the centre are cut; at the
    centre tap output group i sees input groups <= i (< i when ``zerodiag``).
    """
    c = kernel // 2
    mask = torch.ones(n_out, n_in, kernel, kernel)
    mask[:, :, c + 1:, :] = 0
    mask[:, :, c, c:] = 0
    mask[:, :, c, c] = _centre_mask(n_in, n_out, zerodiag)
    return mask


def _centre_mask(n_in: int, n_out: int, zerodiag: bool) -> torch.Tensor:
    """(out, in) mask: output unit j may read input unit i iff group(i) <= group(j) (< if zerodiag)."""
    if n_out >= n_in:
        if n_out % n_in:
            raise ValueError(f"AR layer widths must divide each other, got in={n_in}, out={n_out}")
        k = n_out // n_in
        gi = torch.arange(n_in)
        go = torch.arange(n_out) // k
    else:
        if n_in % n_out:
            raise ValueError(f"AR layer widths must divide each other, got in={n_in}, out={n_out}")
        k = n_in // n_out
        gi = torch.arange(n_in) // k
        go = torch.arange(n_out)
    allowed = gi[None, :] < go[:, None] if zerodiag else gi[None, :] <= go[:, None]
    return allowed.float()


class ARConv2d(WNConv2d):
    """Weight-normalised masked conv for IAF (Kingma et al. 2016, Appendix B.2)."""

    def __init__(self, n_in: int, n_out: int, kernel: int = 3, zerodiag: bool = False, init_scale: float = 1.0):
        super().__init__(n_in, n_out, kernel, 1, kernel // 2, True, 0, init_scale)
        self.register_buffer("mask", ar_mask(n_in, n_out, kernel, zerodiag), persistent=False)

    def direction(self) -> torch.Tensor:
        v = self.v * self.mask
        return v * torch.rsqrt(v.pow(2).sum(dim=(1, 2, 3), keepdim=True) + 1e-12)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily stop gradients to ``module``'s parameters (restores each flag afterwards)."""
    params = [p for p in module.parameters() if p.requires_grad]
    for p in params:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p in params:
            p.requires_grad_(True)


@contextlib.contextmanager
def eval_mode(module: nn.Module) -> Iterator[None]:
    """Temporarily put ``module`` in eval mode (BN uses and keeps its running statistics)."""
    flags = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield
    finally:
        for m, flag in flags:
            m.training = flag
