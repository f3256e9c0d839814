"""GAN-train and GAN-test (Shmelkov, Schmid, Alahari, ECCV 2018; paper Appendix E.1, Table 8).

* GAN-test: the classifier trained on the real train split, its accuracy (%) on class-conditional
  samples, labelled by their conditioning (sample quality / precision).
* GAN-train: a classifier trained on generated samples, its accuracy (%) on the real held-out split
  (diversity / recall).
* baseline (real-to-real): the real-trained classifier's accuracy on the real held-out split.
The generated set is fixed per seed: as many samples as the real train split (or ``n_generated``),
class-balanced (n // C per class, the remainder to the first classes, order shuffled), drawn with
``model.sample(n, labels)`` under that seed.  Evaluation is always on the held-out split (not
StudioGAN's train-set bug, PR #177).  The classifier is of the paper's kind, a small ResNet
(Shmelkov et al. used a ResNet): :data:`GAN_RECIPE`, ``Recipe(arch="resnet")`` with its fixed recipe
(metrics/features/classifier.py), for both the real-trained classifier (GAN-test, baseline) and the
one trained on samples (GAN-train).  The real-trained one is a :class:`DomainExtractor` of that
recipe and seed, cached like the domain extractor (it is the domain extractor itself only when that
uses the same recipe).  Mean and std (ddof 0) over seeds.

Progress: tqdm bars on stderr name each stage (training on real / generated images, sampling,
classifying), ``progress=False`` silences them.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence

import numpy as np
import torch

from common.progress import progress_bar

from . import keys
from .features import DomainExtractor, Recipe
from .features.classifier import RESNET_RECIPE, accuracy, train_classifier
from .images import as_unit, check_uint8, sample_levels

#: The Table 8 classifier recipe (the ResNet); protocols/pipeline.py's extractor identity must use it too.
GAN_RECIPE: Recipe = RESNET_RECIPE


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


class _CountingSampler:
    """``model`` with its ``sample`` calls counted on a progress bar (everything else passes through)."""

    def __init__(self, model, bar):
        self._model, self._bar = model, bar

    def __getattr__(self, name):
        return getattr(self._model, name)

    def sample(self, n, labels=None):
        out = self._model.sample(n, labels=labels)
        self._bar.update(n)
        return out


def gan_train_test_seed(model, train_x, train_y, test_x, test_y, levels: int, *, seed: int, n_generated: int,
                        recipe: Recipe, cache_dir, dataset_hash, device, sample_batch_size: int,
                        progress: bool = True) -> Dict[str, float]:
    real_clf = DomainExtractor.fit_or_load(train_x, train_y, levels, seed=seed, cache_dir=cache_dir,
                                           dataset_hash=dataset_hash, test_x=test_x, test_y=test_y,
                                           recipe=recipe, device=device, progress=progress,
                                           label="GAN-test classifier (real)")
    n_classes = real_clf.key["n_classes"]
    labels = balanced_labels(n_generated, n_classes, seed)
    with progress_bar(n_generated, f"GAN-train: sampling {n_generated} images (seed {seed})", enabled=progress,
                      unit="img", delay=3.0) as bar:
        fake = sample_levels(_CountingSampler(model, bar), n_generated, levels, seed=seed, labels=labels,
                             batch_size=sample_batch_size)
    fake_clf = train_classifier(as_unit(fake, levels), labels, n_classes, seed=seed, recipe=recipe, device=device,
                                progress=progress, desc=f"GAN-train classifier: training {recipe.arch} (seed {seed}) "
                                                        f"on {n_generated} generated images")
    return {"seed": seed, keys.REAL_BASELINE: real_clf.accuracy,
            keys.GAN_TEST: accuracy(real_clf.net, as_unit(fake, levels), labels, 128, progress=progress,
                                    desc=f"GAN-test: classifying {n_generated} generated images"),
            keys.GAN_TRAIN: accuracy(fake_clf, as_unit(test_x, levels), test_y, 128, progress=progress,
                                     desc=f"GAN-train: classifying {len(test_x)} held-out images")}


def gan_train_test(model, train_x, train_y, test_x, test_y, levels: int, *, seeds: Sequence[int] = (0, 1, 2),
                   n_generated: Optional[int] = None, recipe: Recipe = GAN_RECIPE, cache_dir=None,
                   dataset_hash: Optional[str] = None, device=None, sample_batch_size: int = 500,
                   progress: bool = True) -> GanTrainTest:
    """GAN-train, GAN-test and the real-to-real baseline of a class-conditional ``model``, over ``seeds``
    (tqdm bars on stderr unless ``progress=False``)."""
    train_x, test_x = check_uint8(torch.as_tensor(train_x), levels, "train_x"), check_uint8(
        torch.as_tensor(test_x), levels, "test_x")
    n = len(train_x) if n_generated is None else int(n_generated)
    rows = [gan_train_test_seed(model, train_x, train_y, test_x, test_y, levels, seed=s, n_generated=n,
                                recipe=recipe, cache_dir=cache_dir, dataset_hash=dataset_hash, device=device,
                                sample_batch_size=sample_batch_size, progress=progress) for s in seeds]
    names = (keys.GAN_TRAIN, keys.GAN_TEST, keys.REAL_BASELINE)
    return GanTrainTest({k: float(np.mean([r[k] for r in rows])) for k in names},
                        {k: float(np.std([r[k] for r in rows])) for k in names}, rows, n)
