"""Inception score (Salimans et al. 2016; paper Appendix D, Eq. 14).

    IS = exp(E_x KL(p(y|x) || p(y)))

computed as the OpenAI / torch-fidelity / stylegan2-ada reference: 10 splits, chunk i is
``[i*N//s : (i+1)*N//s]``, p(y) is the mean of p(y|x) over the chunk, the score is the mean over
chunks and the spread their ``np.std`` (ddof 0).  Float64 throughout (as torch-fidelity), with
0 log 0 = 0 (``scipy.special.rel_entr``).  Probabilities are ``softmax`` of the logits; for the
Inception extractor those are the 1008-way logits without the output bias.

Order.  Samples are split in the order given unless ``shuffle_seed`` is set, in which case
they are permuted first (torch-fidelity permutes with a fixed seed): a folder of class-sorted
samples would otherwise give class-pure chunks.  The registered ``is`` metric shuffles with the
evaluation seed.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from scipy.special import log_softmax, rel_entr


def probabilities_from_logits(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    return np.exp(log_softmax(np.asarray(logits, dtype=np.float64), axis=1))


def compute_inception_score(probs: np.ndarray, *, splits: int = 10,
                            shuffle_seed: Optional[int] = None) -> Tuple[float, float]:
    """(mean, std) of the Inception score of class probabilities ``probs`` (N x classes)."""
    p = np.asarray(probs, dtype=np.float64)
    if p.ndim != 2 or p.shape[0] < splits:
        raise ValueError(f"IS needs an N x classes probability array with N >= splits={splits}, got {p.shape}")
    if shuffle_seed is not None:
        p = p[np.random.RandomState(shuffle_seed).permutation(p.shape[0])]
    n = p.shape[0]
    scores = []
    for i in range(splits):
        part = p[i * n // splits:(i + 1) * n // splits]
        kl = rel_entr(part, part.mean(axis=0, keepdims=True)).sum(axis=1)
        scores.append(np.exp(kl.mean()))
    return float(np.mean(scores)), float(np.std(scores))
