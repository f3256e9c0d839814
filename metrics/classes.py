"""Class coverage of samples under a classifier: which classes a model generates, and which it dropped.

Neither FID nor recall says *which* modes a model lost; a classifier trained on the real data does, when the data
has labels (the domain extractor: digits, Fashion-MNIST).  Each image is given its classifier's most probable
class (argmax of the logits; the real reference set is labelled the same way, so the classifier's own confusions
cancel).  From the two label histograms:

* shares: the fraction of images per class, for the samples and for the real set;
* ``class_kl``: KL(sample shares || real shares) in nats (0 = the real class balance; a model that drops m of K
  balanced classes and spreads their mass evenly scores ln(K / (K - m)); a real share of 0 counts as 1 / n_real);
* ``classes_low``: the number of classes whose sample share is below half their real share.

The same idea as the mode counts of Srivastava et al. (VEEGAN, 2017) and Lin et al. (PacGAN, 2018) on stacked
MNIST, and the class-distribution check of Shmelkov et al. (2018, "How good is my GAN?").
"""
from __future__ import annotations

from typing import Dict

import numpy as np

LOW_FRACTION = 0.5


def class_shares(logits: np.ndarray, n_classes: int) -> np.ndarray:
    """Fraction of images per class under argmax(logits); (n_classes,) summing to 1."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape[1] != n_classes or len(logits) == 0:
        raise ValueError(f"class shares need N x {n_classes} logits with N >= 1, got shape {logits.shape}")
    return np.bincount(logits.argmax(axis=1), minlength=n_classes) / len(logits)


def compute_class_coverage(fake_logits: np.ndarray, real_logits: np.ndarray) -> Dict[str, object]:
    """{"class_kl", "classes_low", "fake_shares", "real_shares"} of two logit sets of one classifier."""
    n_classes = np.asarray(real_logits).shape[-1]
    fake, real = class_shares(fake_logits, n_classes), class_shares(real_logits, n_classes)
    floor = np.where(real > 0, real, 1.0 / len(real_logits))
    on = fake > 0
    kl = float(np.sum(fake[on] * np.log(fake[on] / floor[on])))
    low = int(np.sum((real > 0) & (fake < LOW_FRACTION * real)))
    return {"class_kl": max(kl, 0.0), "classes_low": low, "fake_shares": fake, "real_shares": real}
