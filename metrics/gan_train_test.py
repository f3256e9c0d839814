"""GAN-train and GAN-test (Shmelkov, Schmid, Alahari, ECCV 2018; paper Appendix E.1, Table 8).

* GAN-test: the classifier trained on the real train split, its accuracy (%) on class-conditional
  samples, labelled by their conditioning (sample quality / precision).
* GAN-train: a classifier trained on generated samples, its accuracy (%) on the real held-out split
  (diversity / recall).
* baseline (real-to-real): the real-trained classifier's accuracy on the real held-out split.
The generated set is fixed per seed: as many samples as the real train split (or ``n_generated``),
class-balanced (n // C per class, the remainder to the first classes, order shuffled), drawn with
``model.sample(n, labels)`` under that seed.  Evaluation is always on the held-out split (not
StudioGAN's train-set bug, PR #177).  The classifier and its fixed recipe are the domain
extractor's (metrics/features/classifier.py); the real-trained one *is* the domain extractor of
that seed, so it is shared with FID/IS and cached.  Mean and std (ddof 0) over seeds.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from . import keys
from .features import DomainExtractor, Recipe
from .features.classifier import accuracy, train_classifier
from .images import as_unit, check_uint8, sample_levels


@dataclass
class GanTrainTest:
    mean: Dict[str, float]            # {GAN_TRAIN, GAN_TEST, REAL_BASELINE}: accuracy in %
    std: Dict[str, float]             # same keys, std over seeds
    per_seed: List[Dict[str, float]]  # one dict per seed (with "seed")
    n_generated: int


def balanced_labels(n: int, n_classes: int, seed: int) -> torch.Tensor:
    """n labels, n // C of each class (the first n % C classes get one more), in seeded random order."""
    labels = torch.arange(n) % n_classes
    return labels[torch.randperm(n, generator=torch.Generator().manual_seed(seed))]


def gan_train_test_seed(model, train_x, train_y, test_x, test_y, levels: int, *, seed: int, n_generated: int,
                        recipe: Recipe, cache_dir, dataset_hash, device, sample_batch_size: int) -> Dict[str, float]:
    real_clf = DomainExtractor.fit_or_load(train_x, train_y, levels, seed=seed, cache_dir=cache_dir,
                                           dataset_hash=dataset_hash, test_x=test_x, test_y=test_y,
                                           recipe=recipe, device=device)
    n_classes = real_clf.key["n_classes"]
    labels = balanced_labels(n_generated, n_classes, seed)
    fake = sample_levels(model, n_generated, levels, seed=seed, labels=labels, batch_size=sample_batch_size)
    fake_clf = train_classifier(as_unit(fake, levels), labels, n_classes, seed=seed, recipe=recipe, device=device)
    return {"seed": seed, keys.REAL_BASELINE: real_clf.accuracy,
            keys.GAN_TEST: accuracy(real_clf.net, as_unit(fake, levels), labels),
            keys.GAN_TRAIN: accuracy(fake_clf, as_unit(test_x, levels), test_y)}


def gan_train_test(model, train_x, train_y, test_x, test_y, levels: int, *, seeds: Sequence[int] = (0, 1, 2),
                   n_generated: Optional[int] = None, recipe: Recipe = Recipe(), cache_dir=None,
                   dataset_hash: Optional[str] = None, device=None, sample_batch_size: int = 500) -> GanTrainTest:
    """GAN-train, GAN-test and the real-to-real baseline of a class-conditional ``model``, over ``seeds``."""
    train_x, test_x = check_uint8(torch.as_tensor(train_x), levels, "train_x"), check_uint8(
        torch.as_tensor(test_x), levels, "test_x")
    n = len(train_x) if n_generated is None else int(n_generated)
    rows = [gan_train_test_seed(model, train_x, train_y, test_x, test_y, levels, seed=s, n_generated=n,
                                recipe=recipe, cache_dir=cache_dir, dataset_hash=dataset_hash, device=device,
                                sample_batch_size=sample_batch_size) for s in seeds]
    names = (keys.GAN_TRAIN, keys.GAN_TEST, keys.REAL_BASELINE)
    return GanTrainTest({k: float(np.mean([r[k] for r in rows])) for k in names},
                        {k: float(np.std([r[k] for r in rows])) for k in names}, rows, n)
