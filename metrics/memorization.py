"""Tests of training-set copying on features: AuthPct (dgm-eval) and C_T (Meehan et al. 2020).

AuthPct (layer6ai-labs/dgm-eval ``dgm_eval/metrics/authpct.py``, after Alaa et al. 2022): a sample is
*authentic* when its distance to its nearest training point t is larger than the distance from t to t's
own nearest training neighbour; AuthPct = 100 x the authentic fraction (higher is better; an exact copy
of a training image is never authentic).  100 - AuthPct is the page's "closer than the training image's
own neighbour" fraction.

C_T (Meehan, Chaudhuri & Dasgupta, AISTATS 2020, arXiv:2004.05675; dgm-eval ``dgm_eval/metrics/ct.py``,
from casey-meehan/data-copying): features reduced to 64 principal components of the training set when
wider (PCA with the exact ``full`` solver, so that it is deterministic), the training set cut into 3
cells by KMeans (``n_init=10``, ``random_state=seed``: the reference leaves the seed free); in each cell,
the distances of the test (P_n) and generated (Q_m) points to their nearest training point in the cell
are compared by a Mann-Whitney U test, Z-scored as Z = (U - (n m / 2 - 0.5)) / sqrt(n m (n + m + 1) / 12)
with U the statistic of the generated distances; C_T is the average of the cells' Z weighted by their
share of test points, over the cells holding more than tau = 20 / m of the samples.  C_T << 0: the
samples lie closer to the training set than held-out data do (copying); >> 0: underfitting; near 0 is
right, so the key has no better direction (metrics/keys.py).

Nearest neighbours: float64, tiled (|a|^2 + |b|^2 - 2 a.b) for the search, then the chosen pair's
distance recomputed directly, so that an exact copy is at distance exactly 0.
tests/test_metrics_modern.py checks both against the references' formulas (1e-6).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np
import torch
from scipy.stats import rankdata

TILE_ELEMENTS = 1 << 24   # float64 entries of one distance tile (128 MiB)
CT_CELLS = 3          # KMeans cells of the training set (the reference's)
CT_PCA = 64           # principal components kept when the features are wider (the reference's)
CT_MIN_SHARE = 20     # a cell enters C_T when it holds more than this many of the m samples (tau = 20 / m)


def nearest(a: np.ndarray, b: np.ndarray, exclude_self: bool = False) -> Tuple[np.ndarray, np.ndarray]:
    """(distance, index) of each row of ``a``'s nearest row of ``b`` (float64); ``exclude_self``: a is b and a
    row may not pick itself (duplicates elsewhere in b still count, as the reference's inf diagonal)."""
    ta, tb = torch.as_tensor(np.asarray(a, np.float64)), torch.as_tensor(np.asarray(b, np.float64))
    b_sq = (tb * tb).sum(1)
    idx, rows_per_tile = torch.empty(len(ta), dtype=torch.long), max(1, TILE_ELEMENTS // max(1, len(tb)))
    for s in range(0, len(ta), rows_per_tile):
        t = ta[s:s + rows_per_tile]
        d2 = (t * t).sum(1)[:, None] + b_sq[None, :] - 2 * (t @ tb.T)
        if exclude_self:
            rows = torch.arange(len(t))
            d2[rows, rows + s] = float("inf")
        idx[s:s + len(t)] = d2.argmin(1)
    dist = (ta - tb[idx]).norm(dim=1)
    return dist.numpy(), idx.numpy()


def compute_authpct(train_features, fake_features) -> float:
    """AuthPct: 100 x the fraction of samples farther from their nearest training point than that point is
    from its own nearest training neighbour."""
    train = np.asarray(train_features, np.float64)
    if len(train) < 2:
        raise ValueError(f"AuthPct needs at least 2 training images, got {len(train)}")
    d_fake, idx = nearest(fake_features, train)
    d_train, _ = nearest(train, train, exclude_self=True)
    return float(100.0 * np.mean(d_train[idx] < d_fake))


def z_u(p: np.ndarray, q: np.ndarray, t: np.ndarray) -> float:
    """Z-scored Mann-Whitney U of the nearest-training distances of q (generated) against p (test)."""
    lq, lp = nearest(q, t)[0], nearest(p, t)[0]
    m, n = len(lq), len(lp)
    ranks = rankdata(np.concatenate([lq, lp]))
    u = ranks[:m].sum() - m * (m + 1) / 2
    return float((u - (n * m / 2 - 0.5)) / np.sqrt(n * m * (n + m + 1) / 12))


def _reduce(train, test, fake, seed):
    if train.shape[1] <= CT_PCA:
        return train, test, fake
    from sklearn.decomposition import PCA
    pca = PCA(n_components=CT_PCA, svd_solver="full", random_state=seed).fit(train)
    return pca.transform(train), pca.transform(test), pca.transform(fake)


def compute_ct(train_features, test_features, fake_features, *, seed: int = 0) -> float:
    """C_T of the samples against the training set, with the test set as the held-out reference."""
    from sklearn.cluster import KMeans
    train, test, fake = (np.asarray(f, np.float64) for f in (train_features, test_features, fake_features))
    if len(fake) <= CT_MIN_SHARE:
        raise ValueError(f"C_T needs more than {CT_MIN_SHARE} samples, got {len(fake)}")
    train, test, fake = _reduce(train, test, fake, seed)
    km = KMeans(n_clusters=CT_CELLS, n_init=10, random_state=seed).fit(train)
    cells = [km.predict(x) for x in (train, test, fake)]
    shares_q = np.bincount(cells[2], minlength=CT_CELLS) / len(fake)
    shares_p = np.bincount(cells[1], minlength=CT_CELLS) / len(test)
    z = np.zeros(CT_CELLS)
    for i in range(CT_CELLS):
        t, p, q = train[cells[0] == i], test[cells[1] == i], fake[cells[2] == i]
        if not len(t) or not len(p):
            raise ValueError(f"C_T: cell {i} of {CT_CELLS} holds no test or training points; use more test images")
        z[i] = z_u(p, q, t) if len(q) else 0.0
    keep = shares_q > CT_MIN_SHARE / len(fake)
    if not keep.any():
        raise ValueError(f"C_T: no cell holds more than {CT_MIN_SHARE} of the {len(fake)} samples; draw more samples")
    return float(shares_p[keep] @ z[keep] / shares_p[keep].sum())
