"""How IS and FID react to dropping real data (paper Appendix D, Table 7).

The paper scores random subsets of CIFAR-10's 50k training images (50k, 40k, ..., 2.5k) against
the full set: the quality is unchanged while the coverage shrinks.  Here the sizes are fractions of
whatever set is given (default 1, .8, .6, .4, .2, .1, .05 of the train split).  Features are
computed once for the full set (cached); the subsets are nested prefixes of one seeded
permutation; IS uses 10 splits of the subset, FID is subset vs the full set (0 at fraction 1,
up to round-off).
"""
from __future__ import annotations

from typing import List, Sequence

import numpy as np

from . import keys
from .api import features_of
from .features import Features
from .fid import compute_fid
from .inception_score import compute_inception_score, probabilities_from_logits

FRACTIONS = (1.0, 0.8, 0.6, 0.4, 0.2, 0.1, 0.05)


def subset_scores(full: Features, fractions: Sequence[float] = FRACTIONS, *, seed: int = 0,
                  splits: int = 10) -> List[dict]:
    """Rows {"fraction", "n", IS, IS_STD, FID} for random subsets of precomputed features."""
    order = np.random.RandomState(seed).permutation(len(full))
    rows = []
    for frac in fractions:
        n = int(round(frac * len(full)))
        if not 0 < frac <= 1 or n < max(2, splits):
            raise ValueError(f"fraction {frac} of {len(full)} images gives {n}; need 0 < fraction <= 1 "
                             f"and at least {max(2, splits)} images")
        sub = full.subset(order[:n])
        is_mean, is_std = compute_inception_score(probabilities_from_logits(sub.logits), splits=splits)
        rows.append({"fraction": float(frac), "n": n, keys.IS: is_mean, keys.IS_STD: is_std,
                     keys.FID: compute_fid(sub.features, full.features)})
    return rows


def subset_sensitivity(real, levels: int, extractor, *, fractions: Sequence[float] = FRACTIONS, seed: int = 0,
                       splits: int = 10, cache_dir=None, batch_size: int = 256) -> List[dict]:
    """Table 7 for real images (uint8 array, folder, .npz or Features) and an extractor object."""
    full = features_of(real, extractor, levels=levels, seed=seed, cache_dir=cache_dir, batch_size=batch_size)
    return subset_scores(full, fractions, seed=seed, splits=splits)
