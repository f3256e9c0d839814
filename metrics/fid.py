"""Frechet distance between Gaussian fits of two feature sets (paper Appendix D, Eq. 15).

    d^2 = ||m1 - m2||^2 + Tr(C1) + Tr(C2) - 2 Tr((C1 C2)^{1/2})

Statistics as pytorch-fid / clean-fid: float64 mean and ``np.cov(rowvar=False)`` (ddof 1).
The trace of the matrix square root is computed exactly without ``scipy.linalg.sqrtm`` (whose
``disp`` argument clean-fid relies on and SciPy 1.18 removes): C1 C2 is similar to the
symmetric PSD matrix S = C1^{1/2} C2 C1^{1/2} (same non-zero eigenvalues even when C1 is
singular), so Tr((C1 C2)^{1/2}) = sum sqrt(eigvalsh(S)), with two symmetric eigen-solves
instead of a Schur decomposition.  Round-off negatives are clipped to 0.  Agrees with
clean-fid's ``frechet_distance`` to 1e-6 relative (tests/test_metrics_fid.py).
"""
from __future__ import annotations

import warnings
from typing import Tuple

import numpy as np


def feature_statistics(features: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
    """(mean, covariance) in float64; covariance with ddof 1 like ``np.cov``."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise ValueError(f"features must be an N x D array with N >= 2, got shape {f.shape}")
    if f.shape[0] < f.shape[1]:
        warnings.warn(f"FID from {f.shape[0]} samples of {f.shape[1]}-d features: the covariance is "
                      "rank-deficient and the value is biased; use at least as many samples as dimensions",
                      stacklevel=2)
    return f.mean(axis=0), np.cov(f, rowvar=False)


def _psd_sqrt(c: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(c)
    return (v * np.sqrt(np.clip(w, 0.0, None))) @ v.T


def trace_sqrt_product(c1: np.ndarray, c2: np.ndarray) -> float:
    """Tr((c1 c2)^{1/2}) for symmetric PSD c1, c2 via eigvalsh(c1^{1/2} c2 c1^{1/2})."""
    r = _psd_sqrt(c1)
    s = r @ c2 @ r
    return float(np.sqrt(np.clip(np.linalg.eigvalsh((s + s.T) / 2), 0.0, None)).sum())


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
    """FID between two feature sets (N x D each, any N >= 2)."""
    return frechet_distance(*feature_statistics(fake_features), *feature_statistics(real_features))
