"""MMD with a Gaussian RBF kernel, the CMMD estimator (Jayasumana et al., CVPR 2024, arXiv:2401.09603).

    MMD^2 = mean k(x, x') + mean k(y, y') - 2 mean k(x, y),    k(a, b) = exp(-|a - b|^2 / (2 sigma^2))

with sigma = 10 and the result multiplied by 1000, as google-research ``cmmd/distance.py``: the
minimum-variance (biased, V-statistic) estimator of Gretton et al. 2012 Eq. 5, every mean over all pairs
*including* i = j; squared distances by the expansion |a|^2 + |b|^2 - 2 a.b.  CMMD is this on
L2-normalised CLIP ViT-L/14@336 embeddings; here the features of any extractor are L2-normalised first
(``normalize=True``, a no-op on CLIP's), so that the same number in the domain or DINOv2 space is the
CMMD estimator in that space (the page's "MMD" column).  Kernel sums run over float64 tiles of at most
``TILE_ELEMENTS`` entries, so 50k x 50k never lives in memory.  tests/test_metrics_modern.py checks it against the
reference formula on full matrices (1e-6).
"""
from __future__ import annotations

import numpy as np

SIGMA = 10.0
SCALE = 1000.0
TILE_ELEMENTS = 1 << 24   # float64 kernel entries per tile (128 MiB)


def _unit_rows(x: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms > 0, norms, 1.0)          # zero rows stay zero (sklearn's normalize)


def _mean_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> float:
    """mean over all pairs of exp(-gamma |a_i - b_j|^2), tiled over rows of a."""
    b_sq, total, rows = (b * b).sum(1), 0.0, max(1, TILE_ELEMENTS // len(b))
    for s in range(0, len(a), rows):
        t = a[s:s + rows]
        d2 = (t * t).sum(1)[:, None] + b_sq[None, :] - 2 * (t @ b.T)
        total += float(np.exp(-gamma * d2).sum())
    return total / (len(a) * len(b))


def compute_mmd(fake_features, real_features, *, sigma: float = SIGMA, scale: float = SCALE,
                normalize: bool = True) -> float:
    """scale x MMD^2 (RBF, minimum-variance estimator) between two N x D feature sets, in float64."""
    x = np.asarray(real_features, dtype=np.float64)
    y = np.asarray(fake_features, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1] or not len(x) or not len(y):
        raise ValueError(f"MMD needs two non-empty N x D feature arrays of equal D, got {y.shape} and {x.shape}")
    if normalize:
        x, y = _unit_rows(x), _unit_rows(y)
    gamma = 1.0 / (2 * sigma ** 2)
    return scale * (_mean_kernel(x, x, gamma) + _mean_kernel(y, y, gamma) - 2 * _mean_kernel(x, y, gamma))
