"""Python API of the evaluation suite; the CLI (metrics/cli.py) is a thin shell over it.

Data flow (DESIGN.md): samples -> features once per sample set (cached) -> every requested
registered metric from those features.  ``fake`` / ``real`` may be
* uint8 arrays or tensors of levels 0..levels-1 (N x C x H x W);
* float arrays in [0, 1]: model samples in u-space, quantised with ``models.base.quantize``
  (display floats x / (L - 1) map back to x exactly);
* a folder of image files or an ``.npz`` (metrics/images.py);
* an object with ``sample(n, labels=None)`` (then ``n_fake`` is required; the feature cache is keyed
  by a hash of its state_dict when it is an ``nn.Module``, otherwise it is not cached);
* precomputed :class:`~metrics.features.Features`.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, Optional, Sequence, Tuple

import numpy as np
import torch

from . import suite  # noqa: F401  (registers the metrics)
from .cache import hash_array, hash_module
from .features import DomainExtractor, Features, InceptionExtractor, extract
from .images import load_images, sample_levels, to_levels
from .prd import plot_prd
from .registry import METRICS

DEFAULT_METRICS = ("fid", "kid", "is", "prd", "prdc")
SAMPLE_BATCH = 500


@dataclass
class Evaluation:
    values: Dict[str, float]                                   # keyed by metrics/keys.py constants
    curves: Dict[str, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # "prd": (precision, recall)
    meta: dict = field(default_factory=dict)                   # extractor id/identity, sample counts, seed


def load_extractor(extractor, *, levels: int, seed: int = 0, cache_dir=None, inception_weights=None,
                   train: Optional[tuple] = None, heldout: Optional[tuple] = None, device=None):
    """An extractor object, or one built from its name: "inception" (weights file) or "domain"
    (needs ``train=(x, y)`` uint8 images and labels; ``heldout=(x, y)`` measures its accuracy)."""
    if not isinstance(extractor, str):
        return extractor
    if extractor == "inception":
        return InceptionExtractor(inception_weights, device=device)
    if extractor == "domain":
        if train is None:
            raise ValueError("the domain extractor is trained on labelled real data: pass train=(x, y) "
                             "(CLI: --train NPZ with arrays x and y)")
        hx, hy = heldout if heldout is not None else (None, None)
        return DomainExtractor.fit_or_load(train[0], train[1], levels, seed=seed, cache_dir=cache_dir,
                                           test_x=hx, test_y=hy, device=device)
    raise ValueError(f"unknown extractor {extractor!r}; valid extractors: domain, inception")


def _source(images, levels: int, n: Optional[int], seed: int, labels):
    """(cache key or None, thunk returning uint8 images) for any accepted input."""
    if hasattr(images, "sample") and callable(images.sample):
        if n is None:
            raise ValueError("sampling a model needs n_fake (the number of samples to draw)")
        key = None
        if isinstance(images, torch.nn.Module):
            key = {"model": hash_module(images), "n": n, "seed": seed, "sample_batch": SAMPLE_BATCH,
                   "labels": None if labels is None else hash_array(torch.as_tensor(labels))}
        return key, lambda: sample_levels(images, n, levels, seed=seed, labels=labels, batch_size=SAMPLE_BATCH)
    x = load_images(images, levels)[0] if isinstance(images, (str, Path)) else to_levels(images, levels)
    return {"data": hash_array(x)}, lambda: x


def features_of(images, extractor, *, levels: int, seed: int = 0, cache_dir=None, n: Optional[int] = None,
                labels=None, batch_size: int = 256) -> Features:
    """Features (and logits) of one sample set, computed once and cached (see module docstring)."""
    if isinstance(images, Features):
        if images.extractor != extractor.id:
            raise ValueError(f"precomputed features come from {images.extractor}, not {extractor.id}")
        return images
    key, thunk = _source(images, levels, n, seed, labels)
    return extract(extractor, thunk, levels, source=key, cache_dir=cache_dir if key else None,
                   batch_size=batch_size)


def compute_metrics(fake: Features, real: Features, metrics: Sequence[str] = DEFAULT_METRICS,
                    seed: int = 0) -> Evaluation:
    """Every requested registered metric from one pair of feature sets."""
    values, curves = {}, {}
    for name in metrics:
        fn = METRICS.get(name)
        if METRICS.meta(name)["needs"] == "logits" and fake.logits is None:
            raise ValueError(f"metric {name!r} needs logits, which extractor {fake.extractor} did not give")
        for k, v in fn(fake, real, seed).items():
            if k == "prd_curve":
                curves["prd"] = v
            else:
                values[k] = float(v)
    return Evaluation(values, curves, {"extractor": fake.extractor, "n_fake": len(fake), "n_real": len(real),
                                       "seed": seed, "metrics": list(metrics)})


def evaluate_detailed(fake, real, *, levels: int, extractor, metrics: Sequence[str] = DEFAULT_METRICS,
                      seed: int = 0, cache_dir=None, n_fake: Optional[int] = None, fake_labels=None,
                      inception_weights=None, train: Optional[tuple] = None, heldout: Optional[tuple] = None,
                      extractor_seed: int = 0, device=None, batch_size: int = 256, out_dir=None) -> Evaluation:
    """:func:`evaluate` with the PRD curve and provenance; ``out_dir`` receives prd.png and prd_curve.npz.

    ``extractor_seed`` seeds a domain extractor built from its name (fixed across evaluation seeds,
    so that values of different seeds share one feature space).
    """
    for name in metrics:
        METRICS.get(name)
    ext = load_extractor(extractor, levels=levels, seed=extractor_seed, cache_dir=cache_dir,
                         inception_weights=inception_weights, train=train, heldout=heldout, device=device)
    common = dict(levels=levels, seed=seed, cache_dir=cache_dir, batch_size=batch_size)
    result = compute_metrics(features_of(fake, ext, n=n_fake, labels=fake_labels, **common),
                             features_of(real, ext, **common), metrics, seed)
    result.meta["extractor_identity"] = ext.identity()
    if out_dir is not None and "prd" in result.curves:
        precision, recall = result.curves["prd"]
        Path(out_dir).mkdir(parents=True, exist_ok=True)
        np.savez(Path(out_dir) / "prd_curve.npz", precision=precision, recall=recall)
        plot_prd({"fake": (precision, recall)}, Path(out_dir) / "prd.png")
    return result


def evaluate(fake, real, *, levels: int, extractor, metrics: Sequence[str] = DEFAULT_METRICS, seed: int = 0,
             cache_dir=None, **kwargs) -> Dict[str, float]:
    """{metrics/keys.py constant: value} of ``fake`` against ``real`` (keyword options: see evaluate_detailed)."""
    return evaluate_detailed(fake, real, levels=levels, extractor=extractor, metrics=metrics, seed=seed,
                             cache_dir=cache_dir, **kwargs).values
