"""Precision and recall for distributions, PRD (Sajjadi et al. 2018; paper Appendix E.2, Fig. 19).

Matches the authors' reference (github msmsajjadi/precision-recall-distributions, prd_score.py):
* ``compute_prd``: for slopes lambda = tan(angle), angles ``linspace(eps, pi/2 - eps, 1001)`` with
  eps = 1e-10, precision alpha(lambda) = sum_w min(lambda P_ref(w), Q_eval(w)) and recall
  beta(lambda) = alpha(lambda) / lambda.  As compare_gan's later copy of that file, values above 1
  by round-off are clipped to [0, 1] (a value above 1.001 is an error).
* histograms: the union of both embeddings is clustered into 20 clusters with
  ``sklearn.cluster.MiniBatchKMeans(n_clusters=20)``; bin w holds the fraction of each set in cluster
  w (``np.histogram(..., density=True)`` with unit-width bins, i.e. counts / N).  Unlike the
  reference, k-means is seeded (``random_state`` drawn from ``seed``), so results are reproducible;
  10 runs, curves averaged.  The reference keeps the best of ``n_init=10`` k-means++ initialisations
  per run; here ``KMEANS_INITS = 3``: the initialisations are 90% of the time (memory-bound k-means++
  passes), and the values stay within the reference's run-to-run spread (mean +- std over seeds of the
  10-run PRD, 20k points in 40 overlapping modes, fake missing 15: 64-d F_8 0.9586 +- 0.0072 vs the
  reference's 0.9623 +- 0.0058, F_1/8 0.9863 +- 0.0003 vs 0.9861 +- 0.0003; 2048-d F_8 0.9672 +- 0.0075
  vs 0.9716 +- 0.0053, F_1/8 0.9843 +- 0.0003 vs 0.9839 +- 0.0006; one initialisation drifted to 2 std
  below, so it is not used).
* balance: the reference refuses sets of different sizes (clustering is biased towards the larger
  set); here the larger set is subsampled to the smaller one, afresh in each run, from the same
  seeded generator.
* F_beta = (1 + beta^2) P R / (beta^2 P + R + 1e-10); reported as max over the curve of F_8
  (recall-like) and F_1/8 (precision-like), as ``prd_to_max_f_beta_pair``.
* AUC (the paper compares models by the area under their PRD curves): the area under the curve
  in the (recall, precision) plane, by the trapezoid rule over the 1001 points taken along the
  curve from lambda = inf to lambda = 0 (recall increasing; not re-sorted, since round-off makes
  the recalls of a vertical segment unequal and sorting would cut corners).
  Identical distributions give 1, disjoint supports 0.
"""
from __future__ import annotations

from pathlib import Path
from typing import Dict, Tuple

import numpy as np

from common.io import atomic_write

from . import keys

EPSILON = 1e-10
KMEANS_INITS = 3   # k-means++ initialisations per clustering (the reference: 10; see the module docstring)


def compute_prd(eval_dist, ref_dist, num_angles: int = 1001, epsilon: float = EPSILON):
    """PRD curve (precision, recall), each of shape [num_angles], of two histograms."""
    if not 0 < epsilon < 0.1:
        raise ValueError(f"epsilon must be in (0, 0.1), got {epsilon}")
    if not 3 <= num_angles <= 1e6:
        raise ValueError(f"num_angles must be in [3, 1e6], got {num_angles}")
    slopes = np.tan(np.linspace(epsilon, np.pi / 2 - epsilon, num=num_angles))
    ref, ev = np.asarray(ref_dist, dtype=np.float64), np.asarray(eval_dist, dtype=np.float64)
    precision = np.minimum(ref[None, :] * slopes[:, None], ev[None, :]).sum(axis=1)
    recall = precision / slopes
    if max(precision.max(), recall.max()) > 1.001:
        raise ValueError("PRD precision/recall above 1: the histograms must each sum to 1")
    return np.clip(precision, 0, 1), np.clip(recall, 0, 1)


def cluster_into_bins(eval_data, ref_data, num_clusters: int, seed: int) -> Tuple[np.ndarray, np.ndarray]:
    """Cluster the union with seeded mini-batch k-means; return the two cluster histograms."""
    from sklearn.cluster import MiniBatchKMeans

    data = np.vstack([eval_data, ref_data])
    labels = MiniBatchKMeans(n_clusters=num_clusters, n_init=KMEANS_INITS, random_state=seed).fit(data).labels_
    n = len(eval_data)
    hist = [np.bincount(part, minlength=num_clusters) / len(part) for part in (labels[:n], labels[n:])]
    return hist[0], hist[1]


def compute_prd_from_embedding(eval_data, ref_data, *, num_clusters: int = 20, num_angles: int = 1001,
                               num_runs: int = 10, seed: int = 0) -> Tuple[np.ndarray, np.ndarray]:
    """PRD curve of ``eval_data`` (generated) against ``ref_data`` (real), averaged over runs."""
    ev, ref = np.asarray(eval_data, np.float64), np.asarray(ref_data, np.float64)
    if min(len(ev), len(ref)) < num_clusters:
        raise ValueError(f"PRD needs at least num_clusters={num_clusters} points per set, "
                         f"got {len(ev)} and {len(ref)}")
    rng = np.random.RandomState(seed)
    m = min(len(ev), len(ref))
    curves = []
    for _ in range(num_runs):
        e = ev if len(ev) == m else ev[rng.choice(len(ev), m, replace=False)]
        r = ref if len(ref) == m else ref[rng.choice(len(ref), m, replace=False)]
        curves.append(compute_prd(*cluster_into_bins(e, r, num_clusters, rng.randint(2**31 - 1)), num_angles))
    return np.mean([c[0] for c in curves], axis=0), np.mean([c[1] for c in curves], axis=0)


def f_beta(precision, recall, beta: float, epsilon: float = EPSILON) -> np.ndarray:
    """F_beta of each (precision, recall) pair, with the reference's +epsilon in the denominator."""
    p, r = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    if not ((0 <= p).all() and (p <= 1).all() and (0 <= r).all() and (r <= 1).all()):
        raise ValueError("precision and recall must lie in [0, 1]")
    if beta <= 0:
        raise ValueError(f"beta must be positive, got {beta}")
    return (1 + beta**2) * (p * r) / ((beta**2 * p) + r + epsilon)


def max_f_beta_pair(precision, recall, beta: float = 8) -> Tuple[float, float]:
    """(max F_beta, max F_1/beta) over the curve: (F_8, F_1/8) by default."""
    return float(np.max(f_beta(precision, recall, beta))), float(np.max(f_beta(precision, recall, 1 / beta)))


def prd_auc(precision, recall) -> float:
    """Area under a PRD curve (in the angle order of :func:`compute_prd`) in the (recall, precision) plane."""
    p, r = np.asarray(precision, np.float64), np.asarray(recall, np.float64)
    return float(np.trapezoid(p[::-1], r[::-1]))


def plot_prd(curves: Dict[str, Tuple[np.ndarray, np.ndarray]], path, dpi: int = 150) -> Path:
    """Save PRD curves {label: (precision, recall)} as a png in the reference's layout."""
    from matplotlib.figure import Figure  # no pyplot: no global backend or figure state

    fig = Figure(figsize=(3.5, 3.5), dpi=dpi)
    ax = fig.add_subplot(111)
    for label, (precision, recall) in curves.items():
        ax.plot(recall, precision, label=label, alpha=0.5, linewidth=3)
    ax.set(xlim=(0, 1), ylim=(0, 1), xlabel="Recall", ylabel="Precision")
    if curves:
        ax.legend(loc="lower left")
    fig.tight_layout()
    path = Path(path)
    return atomic_write(path, lambda f: fig.savefig(f, format=path.suffix.lstrip(".") or "png", bbox_inches="tight",
                                                    dpi=dpi))


def compute_prd_metrics(fake_features, real_features, *, num_clusters: int = 20, num_runs: int = 10,
                        seed: int = 0) -> dict:
    """{PRD_F8, PRD_F1_8, PRD_AUC} plus the curve under ``"prd_curve"`` as (precision, recall)."""
    precision, recall = compute_prd_from_embedding(fake_features, real_features, num_clusters=num_clusters,
                                                   num_runs=num_runs, seed=seed)
    f8, f1_8 = max_f_beta_pair(precision, recall, beta=8)
    return {keys.PRD_F8: f8, keys.PRD_F1_8: f1_8, keys.PRD_AUC: prd_auc(precision, recall),
            "prd_curve": (precision, recall)}
