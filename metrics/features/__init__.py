"""Feature extractors and cached, batched feature extraction.

Extractors: ``inception`` and the pretrained ones in :data:`PRETRAINED` (``dinov2``, ``clip``), each from a
local weights file; ``domain`` (a classifier trained on the dataset's labels) and ``selfsup`` (a denoising
autoencoder trained on its images alone, for data without labels).  An extractor has ``name``,
``id`` (short, for result rows), ``identity()`` (everything that determines its output: weights hash,
preprocessing, version) and ``embed(x_unit)`` mapping one batch of images in [0, 1] to (features, logits);
logits are None for extractors without a classifier head (dinov2, clip, selfsup: no IS).  :func:`extract`
runs it once per sample set in batches and caches the result by a hash of the set's source (data hash, or
checkpoint hash with count, seed and labels), the extractor identity and the levels (STYLE habit 4); every
metric is then computed from those arrays.  The batch size is not part of the key: features do not depend on
it (tests/test_metrics_domain.py).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Callable, Optional

import numpy as np
import torch

from common.progress import progress_bar
from common.registry import Registry

from ..cache import cached_arrays
from ..images import as_unit
from .classifier import Recipe, SmallCNN, train_classifier
from .domain import DomainExtractor
from .inception import InceptionExtractor
from .selfsup import SelfSupExtractor

#: extractors built from a local weights file: name -> class(path, device=...) (metrics/features/weights.py)
PRETRAINED = Registry("extractor")


def _pretrained(name: str, module: str, cls: str):
    def build(path=None, *, device=None):
        return getattr(importlib.import_module(module, __name__), cls)(path, device=device)
    PRETRAINED.add(name, build)


_pretrained("inception", ".inception", "InceptionExtractor")
_pretrained("dinov2", ".dinov2", "DINOv2Extractor")      # timm, imported when built
_pretrained("clip", ".clip", "CLIPExtractor")            # open_clip, imported when built


@dataclass
class Features:
    """What every metric is computed from: N x D features and (for IS) N x classes logits."""

    features: np.ndarray
    logits: Optional[np.ndarray]
    extractor: str

    def __len__(self) -> int:
        return len(self.features)

    def subset(self, idx) -> "Features":
        return Features(self.features[idx], None if self.logits is None else self.logits[idx], self.extractor)


def embed_images(extractor, images, levels: int, batch_size: int = 256, progress: bool = True) -> Features:
    """Features and logits of uint8 images (or floats in [0, 1]) in batches of ``batch_size`` (a progress bar
    once it runs longer than 3 s: Inception on a CPU takes minutes)."""
    x = torch.as_tensor(images)
    if len(x) == 0:
        raise ValueError("no images to embed")
    feats, logits = [], []
    with progress_bar(len(x), f"{extractor.name} features of {len(x)} images", enabled=progress, unit="img",
                      delay=3.0) as bar:
        for s in range(0, len(x), batch_size):
            f, lg = extractor.embed(as_unit(x[s:s + batch_size], levels))
            feats.append(f.numpy())
            logits.append(None if lg is None else lg.numpy())
            bar.update(len(f))
    return Features(np.concatenate(feats), None if logits[0] is None else np.concatenate(logits), extractor.id)


def extract(extractor, images: Callable[[], torch.Tensor], levels: int, *, source: dict,
            cache_dir=None, batch_size: int = 256) -> Features:
    """Cached :func:`embed_images`; ``images`` is called only on a cache miss."""
    key = {"source": source, "extractor": extractor.identity(), "levels": levels}

    def compute():
        f = embed_images(extractor, images(), levels, batch_size)
        return {"features": f.features, **({} if f.logits is None else {"logits": f.logits})}

    arrays = cached_arrays(cache_dir, "features", key, compute)
    return Features(arrays["features"], arrays.get("logits"), extractor.id)


__all__ = ["DomainExtractor", "Features", "InceptionExtractor", "PRETRAINED", "Recipe", "SelfSupExtractor", "SmallCNN",
           "embed_images", "extract", "train_classifier"]
