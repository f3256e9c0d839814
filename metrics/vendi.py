"""Vendi score (Friedman & Dieng 2023, arXiv:2210.02410): the effective number of distinct samples.

    VS = exp(-sum_i lambda_i log lambda_i),   lambda = eigenvalues of K / n,   K_ij = cos(x_i, x_j)

with the cosine kernel (rows L2-normalised, K = X X^T) and order q = 1, as dgm-eval
``dgm_eval/metrics/vendi.py`` and vertaix/Vendi-Score ``score_X``; eigenvalues <= 0 (round-off) are left
out of the entropy.  n identical samples score 1, n orthogonal ones n.  The non-zero eigenvalues of
X X^T / n are those of the D x D matrix X^T X / n (the package's ``score_dual``), which is what is
decomposed here: O(n D^2 + D^3) instead of O(n^3), so 10k samples cost a 1024-d eigenproblem, not a
10k-d one.  tests/test_metrics_modern.py compares it with the ``vendi-score`` package.
"""
from __future__ import annotations

import numpy as np


def compute_vendi(features) -> float:
    """Vendi score (q = 1, cosine kernel) of one N x D feature set, in float64."""
    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or not len(x):
        raise ValueError(f"Vendi needs a non-empty N x D feature array, got shape {x.shape}")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    w = np.linalg.eigvalsh(x.T @ x / len(x))
    w = w[w > 0]
    return float(np.exp(-(w * np.log(w)).sum()))
