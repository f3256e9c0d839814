"""Kernel inception distance (Binkowski et al. 2018), clean-fid / stylegan2-ada convention.

Unbiased MMD^2 with the cubic polynomial kernel k(x, y) = (x.y / d + 1)^3, averaged over
``num_subsets`` random subsets of m = min(N_fake, N_real, max_subset_size) points drawn without
replacement from each set; reported raw (not x1e3).  Matches clean-fid's ``kernel_distance``
term for term (per subset (sum(a) - sum(diag a))/(m-1) - 2 sum(b)/m, divided by m at the end),
but draws the subsets from a seeded ``np.random.RandomState`` instead of the global RNG, in the
same order (real subset first, then fake), so that ``np.random.seed(s)`` followed by clean-fid's
``kernel_distance(fake, real)`` equals ``compute_kid(fake, real, seed=s)``
(tests/test_metrics_kid_is.py).

Feature scale.  The kernel is not scale-invariant: features whose x.y/d is far above 1 make the
cubic terms explode.  Inception pool3 features are used raw (as clean-fid).  The domain
extractor divides its features by one fixed scalar, the RMS of its training-set features
(metrics/features/domain.py), so that x.y/d is O(1) for real images -- the same rescaling for
every set it embeds, fixed when the extractor is trained.

Shared Gram matrices.  prdc computes every inner product of real-real, fake-fake and real-fake
features anyway (metrics/prdc.py, in float64 tiles); :class:`KidFromGrams` takes those tiles and sums
the kernel over the same subsets, so that KID next to prdc costs no matrix product of its own
(metrics/suite.py wires it; equal to :func:`compute_kid` up to summation order, tests/test_metrics_kid_is.py).
"""
from __future__ import annotations

from typing import List, Tuple

import numpy as np
import torch

from .prdc import Workspace


def kid_subsets(n_fake: int, n_real: int, *, num_subsets: int, max_subset_size: int,
                seed: int) -> List[Tuple[np.ndarray, np.ndarray]]:
    """(real indices, fake indices) of each subset, drawn as clean-fid draws them (real first)."""
    m = min(n_real, n_fake, max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {m}")
    rng = np.random.RandomState(seed)
    return [(rng.choice(n_real, m, replace=False), rng.choice(n_fake, m, replace=False)) for _ in range(num_subsets)]


def _check(x_all: np.ndarray, y_all: np.ndarray) -> None:
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"KID needs two N x D feature arrays of equal D, got {y_all.shape} and {x_all.shape}")


def compute_kid(fake_features: np.ndarray, real_features: np.ndarray, *, num_subsets: int = 100,
                max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID (MMD^2 estimate, float64) between fake and real features."""
    x_all = np.asarray(real_features, dtype=np.float64)
    y_all = np.asarray(fake_features, dtype=np.float64)
    _check(x_all, y_all)
    d, m, t = x_all.shape[1], min(len(x_all), len(y_all), max_subset_size), 0.0
    subsets = kid_subsets(len(y_all), len(x_all), num_subsets=num_subsets, max_subset_size=max_subset_size, seed=seed)
    for xi, yi in subsets:
        x, y = x_all[xi], y_all[yi]
        a = _cubic(x @ x.T, d) + _cubic(y @ y.T, d)
        b = _cubic(x @ y.T, d)
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)


def _cubic(gram, d: int):
    """(gram / d + 1)^3 in place (numpy array or torch tensor): the kernel of clean-fid's ``polynomial_kernel``."""
    gram /= d
    gram += 1
    cube = gram * gram
    cube *= gram
    return cube


def shared_grams_are_cheaper(n_fake: int, n_real: int, dims: int, max_subset_size: int = 1000) -> bool:
    """Whether :class:`KidFromGrams` on prdc's Gram tiles costs less than :func:`compute_kid`'s own products.

    Per subset, compute_kid multiplies three m x m x D products (~6 m^2 D flops); KidFromGrams weighs every
    entry of the three full Gram matrices by subset membership (~2 (n_real + n_fake)^2 flops per subset).
    """
    m = min(n_fake, n_real, max_subset_size)
    return 3 * m * m * dims > (n_fake + n_real) ** 2


class KidFromGrams:
    """KID from Gram tiles seen once each (a ``gram_hook`` of metrics/prdc.py): the subsets of :func:`compute_kid`.

    For every tile the kernel (g / d + 1)^3 is summed over each subset's entries at once, as
    diag(M_rows^T K M_cols) with 0/1 subset-membership matrices M; self tiles come on and above the
    diagonal (off-diagonal ones count twice, diagonal entries are kept apart), cross tiles once.
    """

    def __init__(self, n_fake: int, n_real: int, dims: int, *, num_subsets: int = 100, max_subset_size: int = 1000,
                 seed: int = 0, device=None):
        subsets = kid_subsets(n_fake, n_real, num_subsets=num_subsets, max_subset_size=max_subset_size, seed=seed)
        self.member = {kind: torch.zeros(n, num_subsets, dtype=torch.float64, device=device)
                       for kind, n in (("real", n_real), ("fake", n_fake))}
        for s, (x, y) in enumerate(subsets):
            self.member["real"][torch.from_numpy(x), s] = 1
            self.member["fake"][torch.from_numpy(y), s] = 1
        self.dims, self.m, self.ws = dims, len(subsets[0][0]), Workspace(device)
        self.sums = {kind: torch.zeros(num_subsets, dtype=torch.float64, device=device)
                     for kind in ("real", "fake", "cross", "diagonal")}

    def __call__(self, kind: str, rows, cols, gram: torch.Tensor) -> None:
        row_kind, col_kind = ("real", "fake") if kind == "cross" else (kind, kind)
        m_rows, m_cols = self.member[row_kind][rows[0]:rows[1]], self.member[col_kind][cols[0]:cols[1]]
        k = torch.div(gram, self.dims, out=self.ws.get("scaled", *gram.shape)).add_(1)
        k = torch.mul(k, k, out=self.ws.get("cube", *gram.shape)).mul_(k)
        self.sums[kind] += ((k @ m_cols) * m_rows).sum(dim=0) * (2 if kind != "cross" and rows != cols else 1)
        if kind != "cross" and rows == cols:
            self.sums["diagonal"] += (k.diagonal()[:, None] * m_rows).sum(dim=0)

    def value(self) -> float:
        """KID of everything seen (every tile of the three Gram matrices must have been passed once)."""
        m, s = self.m, self.sums
        t = ((s["real"] + s["fake"] - s["diagonal"]) / (m - 1) - s["cross"] * 2 / m).sum().item()
        return float(t / len(s["cross"]) / m)
