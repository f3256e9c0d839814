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
"""
from __future__ import annotations

import numpy as np


def compute_kid(fake_features: np.ndarray, real_features: np.ndarray, *, num_subsets: int = 100,
                max_subset_size: int = 1000, seed: int = 0) -> float:
    """KID (MMD^2 estimate, float64) between fake and real features."""
    x_all = np.asarray(real_features, dtype=np.float64)
    y_all = np.asarray(fake_features, dtype=np.float64)
    if x_all.ndim != 2 or y_all.ndim != 2 or x_all.shape[1] != y_all.shape[1]:
        raise ValueError(f"KID needs two N x D feature arrays of equal D, got {y_all.shape} and {x_all.shape}")
    d = x_all.shape[1]
    m = min(x_all.shape[0], y_all.shape[0], max_subset_size)
    if m < 2:
        raise ValueError(f"KID needs at least 2 samples per set, got {m}")
    rng = np.random.RandomState(seed)
    t = 0.0
    for _ in range(num_subsets):
        x = x_all[rng.choice(x_all.shape[0], m, replace=False)]
        y = y_all[rng.choice(y_all.shape[0], m, replace=False)]
        a = (x @ x.T / d + 1) ** 3 + (y @ y.T / d + 1) ** 3
        b = (x @ y.T / d + 1) ** 3
        t += (a.sum() - np.diag(a).sum()) / (m - 1) - b.sum() * 2 / m
    return float(t / num_subsets / m)
