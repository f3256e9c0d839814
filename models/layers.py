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

Speed (benchmarks/README.md): :func:`elu` is ELU computed with ``exp`` (PyTorch's CPU ELU goes through a
scalar ``expm1`` and was 7% of an AV-ADE step); ``forward(..., n_out=k)`` computes only the first k output
units (the prior pass needs half of a decoder head); :func:`weight_cache` computes each weight-normalised
weight once while the parameters do not change (sampling; the two decoder passes of one loss).
"""
from __future__ import annotations

import contextlib
from typing import Iterator, Optional

import torch
import torch.nn.functional as F
from torch import nn


class _ELU(torch.autograd.Function):
    """ELU (alpha 1) as max(x, 0) + (exp(min(x, 0)) - 1); backward by ATen's fused ``elu_backward`` on the
    result, which is itself differentiable (double backward works)."""

    @staticmethod
    def forward(ctx, x):
        y = torch.clamp(x, min=0).add_(torch.clamp(x, max=0).exp_().sub_(1))
        ctx.save_for_backward(y)
        return y

    @staticmethod
    def backward(ctx, grad):
        (y,) = ctx.saved_tensors
        return torch.ops.aten.elu_backward(grad, 1.0, 1.0, 1.0, True, y)


def randn_like(t: torch.Tensor) -> torch.Tensor:
    """``torch.randn_like(t)``, drawn in memory order where the result is channels-last.  PyTorch's CPU
    ``normal_`` fills a tensor that is not contiguous one element at a time (24 ns per element against 2.6 for a
    contiguous one: 13 ms for a 64 x 32 x 16 x 16 latent sliced from a channels-last decoder output), so such
    noise is drawn as a contiguous N x H x W x C tensor and viewed as N x C x H x W.  Same distribution and
    layout; for a channels-last result not the same numbers as ``torch.randn_like`` for a seed (contiguous
    results are unchanged)."""
    out = torch.empty_like(t)     # the layout torch.randn_like gives (channel slices of channels-last: channels-last)
    if out.dim() == 4 and not out.is_contiguous() and out.is_contiguous(memory_format=torch.channels_last):
        n, c, h, w = out.shape
        return torch.randn(n, h, w, c, dtype=t.dtype, device=t.device).permute(0, 3, 1, 2)
    return out.normal_()


def elu(x: torch.Tensor) -> torch.Tensor:
    """``F.elu(x)`` to float tolerance (|difference| <= 1.2e-7: exp(x) - 1 instead of expm1), 3-4x faster on
    CPU: PyTorch's AVX-512 ELU kernel evaluates expm1 one element at a time."""
    if x.is_cuda:
        return F.elu(x)
    return _ELU.apply(x)


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
        self._cache: Optional[dict] = None      # set by weight_cache()

    def _v(self) -> torch.Tensor:
        return self.v

    def _direction(self, n_out: Optional[int]) -> torch.Tensor:
        v = self._v() if n_out is None else self._v().narrow(self.out_dim, 0, n_out)
        dims = [d for d in range(v.dim()) if d != self.out_dim]
        return v * torch.rsqrt(v.pow(2).sum(dim=dims, keepdim=True) + 1e-12)

    def _weight(self, n_out: Optional[int]) -> torch.Tensor:
        view = [1] * self.v.dim()
        view[self.out_dim] = -1
        g = self.g if n_out is None else self.g[:n_out]
        return g.view(view) * self._direction(n_out)

    def _cached(self, kind: str, n_out: Optional[int], make):
        """``make(n_out)``, memoised under weight_cache() while v and g are unchanged (their versions)."""
        if self._cache is None:
            return make(n_out)
        key = (kind, n_out, torch.is_grad_enabled(), self.v.requires_grad, self.g.requires_grad,
               self.v._version, self.g._version)
        out = self._cache.get(key)
        if out is None:
            out = self._cache[key] = make(n_out)
        return out

    def direction(self, n_out: Optional[int] = None) -> torch.Tensor:
        """v / ||v|| with the norm over every dim except the output one (the first ``n_out`` units)."""
        return self._cached("direction", n_out, self._direction)

    def weight(self, n_out: Optional[int] = None) -> torch.Tensor:
        """The effective weight of an unconditional layer (its first ``n_out`` output units)."""
        if self.n_classes:
            raise ValueError("a conditional layer has one weight per class; call it with labels instead")
        return self._cached("weight", n_out, self._weight)

    def forward(self, x: torch.Tensor, y: Optional[torch.Tensor] = None, n_out: Optional[int] = None) -> torch.Tensor:
        """The layer's output, or only its first ``n_out`` output units (channels / features)."""
        b = self.b if (self.b is None or n_out is None) else self.b.narrow(-1, 0, n_out)
        if not self.n_classes:
            return self._op(x, self.weight(n_out), b)
        if y is None:
            raise ValueError(f"{type(self).__name__} is class-conditional: pass labels y (int64, shape [N])")
        out = self._op(x, self.direction(n_out), None)
        view = (out.shape[0], out.shape[1]) + (1,) * (out.dim() - 2)
        g = self.g if n_out is None else self.g[:, :n_out]
        out = out * g[y].view(view)
        return out if b is None else out + b[y].view(view)

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

    def _v(self) -> torch.Tensor:
        return self.v * self.mask


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
def weight_cache(module: nn.Module) -> Iterator[None]:
    """Compute each weight-normalised weight of ``module`` once inside the context (per grad mode and while
    its parameters keep their version).  Use it where parameters do not change (sampling, one loss
    evaluation); a weight shared by two passes receives the sum of both gradients, as before."""
    layers = [m for m in module.modules() if isinstance(m, _WeightNorm) and m._cache is None]
    for m in layers:
        m._cache = {}
    try:
        yield
    finally:
        for m in layers:
            m._cache = None


@contextlib.contextmanager
def fast_inference(module: nn.Module) -> Iterator[None]:
    """Eval mode, no autograd, each weight (ours and ``torch.nn.utils.parametrize``'s) computed once: for
    sampling and likelihood evaluation, where no parameter changes.  Same values as without it."""
    from torch.nn.utils import parametrize

    with eval_mode(module), torch.no_grad(), weight_cache(module), parametrize.cached():
        yield


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
