"""Held-out bits per dimension (paper Section 5, "Evaluation metrics"; docs/design.md, "Feature extractors and
likelihood").

bpd = (NLL_nats + D ln L) / (D ln 2) with D = C*H*W and L the dataset's intensity levels
(``models.base.bits_per_dim``): ``model.nll(x, k)`` bounds -log p(u) for u = (x + U[0,1)) / L
drawn afresh inside the model, and D ln L turns the density on [0,1)^D into a probability of
the discrete image (a uniform model scores exactly log2 L; for 8-bit data this is the usual
"+8 bits" of Glow / Real-NVP).  k = 1 is the ELBO; k = K > 1 the importance-weighted bound
(K = 100 at the paper budget).  The NLL is averaged over every test image in float64.

The dequantisation and importance-sampling noise is drawn under ``torch.random.fork_rng`` seeded
with ``seed``, so a value is reproducible and the caller's RNG stream is left untouched.
"""
from __future__ import annotations

from typing import Dict, Optional

import torch

from models.base import bits_per_dim

from . import keys
from .images import model_device


def _check_images(test_x) -> torch.Tensor:
    x = torch.as_tensor(test_x)
    if x.dtype != torch.uint8 or x.ndim != 4 or x.shape[0] == 0:
        raise ValueError(f"held-out BPD needs uint8 images N x C x H x W (intensity levels), got "
                         f"{x.dtype} of shape {tuple(x.shape)}")
    return x


def _check_nll(model, nll, n: int) -> None:
    """``nll`` returns one value per image (nats per image, not a batch mean nor per-dimension values)."""
    if not isinstance(nll, torch.Tensor) or tuple(nll.shape) != (n,):
        got = tuple(nll.shape) if isinstance(nll, torch.Tensor) else type(nll).__name__
        raise ValueError(f"{type(model).__name__}.nll(x, k) must return one value per image (nats per image, shape "
                         f"({n},)), got {got}")


@torch.no_grad()
def heldout_bpd(model, test_x, levels: int, *, k: int = 1, batch_size: int = 256,
                seed: int = 0) -> Optional[float]:
    """Mean bits/dim bound of ``model`` on uint8 ``test_x``; None when ``model.nll`` returns None.

    ``batch_size`` counts (image, importance sample) pairs per ``nll`` call, so a call holds
    ``max(1, batch_size // k)`` images.
    """
    x = _check_images(test_x)
    if k < 1:
        raise ValueError(f"k (importance samples) must be >= 1, got {k}")
    was_training = getattr(model, "training", False)
    if hasattr(model, "eval"):
        model.eval()
    device, step, total = model_device(model), max(1, batch_size // k), 0.0
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            torch.manual_seed(seed)
            for s in range(0, x.shape[0], step):
                nll = model.nll(x[s:s + step].to(device), k)
                if nll is None:
                    return None
                _check_nll(model, nll, min(step, x.shape[0] - s))
                total += nll.double().sum().item()
    finally:
        if was_training:
            model.train()
    return float(bits_per_dim(total / x.shape[0], x[0].numel(), levels))


def heldout_bpd_bounds(model, test_x, levels: int, *, k_iw: int = 100, batch_size: int = 256,
                       seed: int = 0) -> Dict[str, Optional[float]]:
    """{BPD: ELBO bound (k=1), BPD_IW: importance-weighted bound (k=k_iw)}; values None without a density."""
    return {keys.BPD: heldout_bpd(model, test_x, levels, k=1, batch_size=batch_size, seed=seed),
            keys.BPD_IW: heldout_bpd(model, test_x, levels, k=k_iw, batch_size=batch_size, seed=seed)}
