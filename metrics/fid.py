"""Frechet distance between Gaussian fits of two feature sets (paper Appendix D, Eq. 15).

    d^2 = ||m1 - m2||^2 + Tr(C1) + Tr(C2) - 2 Tr((C1 C2)^{1/2})

Statistics as pytorch-fid / clean-fid: float64 mean and covariance with ddof 1 (``np.cov(rowvar=False)``).
The covariance is accumulated in float64 over chunks of rows (at most ``STATS_BYTES`` at a time, split evenly),
each chunk centred on the mean into one reused buffer and multiplied by its own transpose (a product numpy hands to
``syrk``), so that memory stays bounded.  For float32 features of ``FLOAT32_MIN_DIM`` dimensions or more
(Inception's 2048) the chunk products run in float32, 1.75x as fast: the chunk is centred on the float32-rounded
mean (the rounding d, |d| ~ 1e-8 |mean|, adds n d d^T, 1e-15 of the covariance), the products round each entry to
~2e-6 of the largest, and the FID of 50k x 2048 Inception-like features stays within 3e-8 of the float64 one
(benchmarks/README.md; tests/test_metrics_fid.py checks 1e-6 against clean-fid).  Narrower or float64 features
keep float64 products (equal to ``np.cov`` to 1e-12): there the time is small, and an FID near the real-data floor
of 64-d features would feel the rounding (~6e-7 relative).
The trace of the matrix square root is computed exactly without ``scipy.linalg.sqrtm`` (whose
``disp`` argument clean-fid relies on and SciPy 1.18 removes, and whose Schur decomposition takes
~25 s at 2048-d): with C1 = L L^T (Cholesky; the symmetric square root when C1 is singular), C1 C2
is similar to the symmetric PSD matrix S = L^T C2 L (same non-zero eigenvalues), so
Tr((C1 C2)^{1/2}) = sum sqrt(eigvalsh(S)): a Cholesky factorisation, two matrix products and one
symmetric eigenvalue solve, all in float64 through ``torch.linalg`` (its LAPACK, MKL in the x86 wheels, solves the
2048-d eigenvalue problem in 0.28 s against 0.39 s for numpy's OpenBLAS build; benchmarks/README.md).  Round-off
negatives are clipped to 0.  Agrees with clean-fid's ``frechet_distance`` to 1e-6 relative
(tests/test_metrics_fid.py).
"""
from __future__ import annotations

import warnings
from typing import Tuple

import numpy as np

STATS_BYTES = 128 << 20  # the centred chunk's buffer: 16384 x 2048 float32 or 8192 x 2048 float64 rows at a time
STATS_ROWS = 0          # > 0: at most this many rows per chunk (tests); 0: as many as STATS_BYTES holds
FLOAT32_MIN_DIM = 512   # float32 features this wide get float32 chunk products (float64 accumulation)


def _chunk_rows(n: int, d: int, itemsize: int) -> int:
    """Rows per chunk: as many as the buffer holds (or STATS_ROWS), the chunks of one set of equal size."""
    cap = STATS_ROWS if STATS_ROWS > 0 else max(1, STATS_BYTES // (d * itemsize))
    chunks = -(-n // cap)
    return -(-n // chunks)


def _warn_rank_deficient(n: int, d: int) -> None:
    warnings.warn(f"FID from {n} samples of {d}-d features: the covariance is rank-deficient and the value is "
                  "biased; use at least as many samples as dimensions", stacklevel=3)


def feature_statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) in float64; covariance with ddof 1 like ``np.cov``."""
    f = np.asarray(features)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be an N x D array with N >= 2, got shape {f.shape}")
    n, d = f.shape
    if n < d:
        _warn_rank_deficient(n, d)
    dtype = np.float32 if f.dtype == np.float32 and d >= FLOAT32_MIN_DIM else np.float64
    mean = f.mean(axis=0, dtype=np.float64)
    centre, cov = mean.astype(dtype), np.zeros((d, d))
    rows = _chunk_rows(n, d, np.dtype(dtype).itemsize)
    buf = np.empty((rows, d), dtype)       # reused: a fresh 128 MiB array per chunk is page-faulted in anew
    for s in range(0, n, rows):
        c = buf[:min(rows, n - s)]
        np.subtract(f[s:s + rows], centre, out=c)
        cov += c.T @ c
    return mean, cov / (n - 1)


def _cholesky(c):
    """The lower Cholesky factor of a float64 tensor, or None where c is not (numerically) positive definite."""
    import torch

    l, info = torch.linalg.cholesky_ex(c)
    return l if int(info) == 0 else None


def _psd_sqrt(c):
    import torch

    w, v = torch.linalg.eigh(c)
    return (v * w.clamp_min(0.0).sqrt()) @ v.mT


def trace_sqrt_product(c1: np.ndarray, c2: np.ndarray) -> float:
    """Tr((c1 c2)^{1/2}) for symmetric PSD c1, c2 via eigvalsh(L^T c2 L) with L L^T = c1."""
    import torch

    t1, t2 = (torch.from_numpy(np.array(c, np.float64)) for c in (c1, c2))   # copies: inputs may be read-only
    l = _cholesky(t1)
    if l is None:                      # singular c1: its symmetric square root is another factor with L L^T = c1
        l = _psd_sqrt(t1)
    s = l.mT @ (t2 @ l)
    return float(torch.linalg.eigvalsh(s).clamp_min(0.0).sqrt().sum())    # reads s's lower triangle


def frechet_distance(mu1, sigma1, mu2, sigma2) -> float:
    """Eq. 15 on given statistics (float64)."""
    mu1, mu2 = np.atleast_1d(np.asarray(mu1, np.float64)), np.atleast_1d(np.asarray(mu2, np.float64))
    s1, s2 = np.atleast_2d(np.asarray(sigma1, np.float64)), np.atleast_2d(np.asarray(sigma2, np.float64))
    if mu1.shape != mu2.shape or s1.shape != s2.shape or s1.shape != (mu1.size, mu1.size):
        raise ValueError(f"statistics do not match: means {mu1.shape} vs {mu2.shape}, "
                         f"covariances {s1.shape} vs {s2.shape}")
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(s1) + np.trace(s2) - 2.0 * trace_sqrt_product(s1, s2))


def compute_fid(fake_features: np.ndarray, real_features: np.ndarray) -> float:
    """FID between two feature sets (N x D each, any N >= 2); sets smaller than D go through their Gram matrix."""
    a, b = np.asarray(fake_features), np.asarray(real_features)
    if a.ndim == 2 and b.ndim == 2 and a.shape[1] == b.shape[1] and min(len(a), len(b)) < a.shape[1]:
        return _fid_low_rank(a, b)
    return frechet_distance(*feature_statistics(fake_features), *feature_statistics(real_features))


def _fid_low_rank(fake: np.ndarray, real: np.ndarray) -> float:
    """The same FID without a D x D matrix, for a set of fewer samples than dimensions (a rank-deficient
    covariance): with centred A (n x D) and B (m x D), C1 = A^T A/(n-1) and C2 = B^T B/(m-1), the non-zero
    eigenvalues of C1 C2 are the squared singular values of A B^T / sqrt((n-1)(m-1)), so
    Tr((C1 C2)^{1/2}) is that matrix's nuclear norm, and Tr(C) = ||A||_F^2 / (n-1)."""
    _warn_rank_deficient(min(len(fake), len(real)), fake.shape[1])
    a, b = np.asarray(fake, np.float64), np.asarray(real, np.float64)
    ma, mb = a.mean(axis=0), b.mean(axis=0)
    a, b = a - ma, b - mb
    na, nb = len(a) - 1, len(b) - 1
    if min(na, nb) < 1:
        raise ValueError(f"features must be N x D arrays with N >= 2, got {len(a)} and {len(b)} rows")
    cross = np.linalg.svd(a @ b.T, compute_uv=False).sum() / np.sqrt(na * nb)
    diff = ma - mb
    return float(diff @ diff + (a * a).sum() / na + (b * b).sum() / nb - 2.0 * cross)
