"""``domain`` extractor: a small classifier (by default the CNN) trained on the dataset's own train split.

How FID / IS / PRD are measured where Inception does not apply (digits, MNIST-like data), as the
MNIST literature does (docs/design.md "Feature extractors and likelihood").  The network and its fixed
recipe are in metrics/features/classifier.py; features are its pre-ReLU penultimate layer, logits feed IS.

Features are divided by one scalar fixed at training time, the RMS of the training images'
features (sqrt(mean f^2) over images and units; over a seeded subset of SCALE_IMAGES = 10,000 of them
when there are more: on Fashion-MNIST 4.4811 vs 4.4781 over all 55k, +0.07%, for a fifth of the
forward passes), so that x.y/d is O(1) and KID's cubic kernel does not explode (metrics/kid.py); FID
scales by that constant squared, PRD and prdc are invariant.  Training and the passes after it show
tqdm progress bars on stderr (``progress=False``: none).

Cache: ``<cache_dir>/domain-<key>.pt`` (weights, loaded with ``weights_only=True``) and ``.json``
(key, held-out accuracy), both written atomically.  The key is the dataset content hash (given,
or sha256 of the train and held-out arrays), seed, levels, shapes, architecture version, recipe,
and where it trains: the device type and, on CPU, torch's thread count (torch's CPU reductions are
not thread-count invariant: the same recipe trained with 1 and 2 threads gives different weights,
and an FID of one cell moved 19.39 -> 19.21), so another thread count is another, honestly labelled
extractor (its own ``id``).  An entry that cannot be used (empty or truncated file, not a weights-only
checkpoint, a .json of another key) is a miss: one warning names the file, the extractor is trained
again and both files are overwritten.  Held-out accuracy is measured on ``test_x``/``test_y`` when
given, otherwise on a seeded 10% of the train split that is then left out of training.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional, Tuple

import numpy as np
import torch
from torch import nn

from common.io import atomic_write

from ..cache import hash_array, hash_key, hash_module, warn_corrupt
from ..images import as_unit, check_uint8
from .classifier import Recipe, accuracy, predict, train_classifier

HOLDOUT_FRACTION = 0.1
SCALE_IMAGES = 10000   # the feature scale is the RMS over (a seeded subset of) this many training images


def _split(train_x, train_y, test_x, test_y, seed: int):
    if test_x is not None:
        return train_x, train_y, test_x, test_y
    perm = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
    n_hold = max(1, int(round(HOLDOUT_FRACTION * len(train_x))))
    hold, keep = perm[:n_hold], perm[n_hold:]
    return train_x[keep], train_y[keep], train_x[hold], train_y[hold]


def training_context(device: torch.device) -> dict:
    """What else changes the trained weights: the device type and, on CPU, torch's thread count."""
    return {"train_device": device.type, "train_threads": torch.get_num_threads() if device.type == "cpu" else None}


def _key(train_x, train_y, test_x, test_y, levels: int, seed: int, dataset_hash: Optional[str], recipe: Recipe,
         device: torch.device) -> dict:
    """Everything that determines the trained classifier (its cache key and ``id``)."""
    data = dataset_hash or hash_key({"train": [hash_array(train_x), hash_array(train_y)],
                                     "test": None if test_x is None else [hash_array(test_x), hash_array(test_y)]})
    heldout = "test" if test_x is not None else f"train{HOLDOUT_FRACTION}"
    return {"extractor": "domain", "dataset": data, "seed": seed, "levels": levels, "shape": list(train_x.shape[1:]),
            "n_classes": int(train_y.max()) + 1, "heldout": heldout, **recipe.key(), **training_context(device)}


class DomainExtractor:
    """Features (scaled pre-ReLU penultimate layer) and logits of the domain classifier."""

    name = "domain"

    def __init__(self, net: nn.Module, levels: int, feature_scale: float, accuracy: float, key: dict,
                 batch_size: int = 128):
        self.net, self.levels, self.feature_scale = net.eval(), levels, float(feature_scale)
        self.accuracy, self.key, self.batch_size = float(accuracy), dict(key), batch_size
        self._weights_hash = None

    @classmethod
    def fit_or_load(cls, train_x, train_y, levels: int, *, seed: int, cache_dir, dataset_hash: Optional[str] = None,
                    test_x=None, test_y=None, recipe: Recipe = Recipe(),
                    device: Optional[torch.device | str] = None, progress: bool = True,
                    label: str = "domain extractor") -> "DomainExtractor":
        """Load the classifier for (data, seed, recipe) from ``cache_dir`` or train and save it.  Training and
        the passes after it show tqdm bars on stderr named ``label`` (``progress=False``: none)."""
        train_x, train_y = check_uint8(torch.as_tensor(train_x), levels, "train_x"), torch.as_tensor(train_y).long()
        if (test_x is None) != (test_y is None):
            raise ValueError("give both test_x and test_y, or neither (then 10% of train is held out)")
        if test_x is not None:
            test_x, test_y = check_uint8(torch.as_tensor(test_x), levels, "test_x"), torch.as_tensor(test_y).long()
        if len(train_y) != len(train_x):
            raise ValueError(f"{len(train_x)} train images but {len(train_y)} labels")
        device = torch.device(device) if device is not None else torch.device("cpu")
        key = _key(train_x, train_y, test_x, test_y, levels, seed, dataset_hash, recipe, device)
        stem = None if cache_dir is None else Path(cache_dir) / f"domain-{hash_key(key)}"
        if stem is not None and stem.with_suffix(".pt").exists() and stem.with_suffix(".json").exists():
            ext = cls._load(stem, key, levels, recipe, device)
            if ext is not None:
                return ext
        ext = cls._fit(train_x, train_y, test_x, test_y, levels, key, seed, recipe, device, progress, label)
        if stem is not None:
            ext._save(stem)
        return ext

    @classmethod
    def _fit(cls, train_x, train_y, test_x, test_y, levels, key, seed, recipe, device, progress=True,
             label="domain extractor") -> "DomainExtractor":
        fit_x, fit_y, held_x, held_y = _split(train_x, train_y, test_x, test_y, seed)
        net = train_classifier(as_unit(fit_x, levels), fit_y, key["n_classes"], seed=seed, recipe=recipe,
                               device=device, progress=progress,
                               desc=f"{label}: training {recipe.arch} (seed {seed}) on {len(fit_x)} images")
        sub = fit_x
        if len(fit_x) > SCALE_IMAGES:
            sub = fit_x[torch.randperm(len(fit_x), generator=torch.Generator().manual_seed(seed))[:SCALE_IMAGES]]
        feats = predict(net, as_unit(sub, levels), 128, progress=progress,
                        desc=f"{label}: feature scale of {len(sub)} train images")[0].double()
        scale = float(feats.pow(2).mean().sqrt().clamp_min(1e-12))
        acc = accuracy(net, as_unit(held_x, levels), held_y, 128, progress=progress,
                       desc=f"{label}: accuracy on {len(held_x)} held-out images")
        return cls(net, levels, scale, acc, key)

    @classmethod
    def _load(cls, stem: Path, key, levels, recipe, device) -> Optional["DomainExtractor"]:
        """The cached extractor, or None (after a warning naming the file) when the entry cannot be used."""
        path = stem.with_suffix(".json")
        try:
            if json.loads(path.read_text())["key"] != key:
                raise ValueError("its key belongs to another extractor")
            path = stem.with_suffix(".pt")
            blob = torch.load(path, map_location="cpu", weights_only=True)
            c, h, _ = key["shape"]
            net = recipe.build(c, h, key["n_classes"])
            net.load_state_dict(blob["state_dict"])
            return cls(net.to(device), levels, blob["feature_scale"], blob["accuracy"], key)
        except Exception as e:  # noqa: BLE001 -- any failure to read means "not a usable entry"
            warn_corrupt(path, e, "training the extractor again and overwriting it")
            return None

    def _save(self, stem: Path) -> None:
        blob = {"state_dict": {k: v.cpu() for k, v in self.net.state_dict().items()},
                "feature_scale": self.feature_scale, "accuracy": self.accuracy}
        atomic_write(stem.with_suffix(".pt"), lambda f: torch.save(blob, f))
        meta = {"key": self.key, "accuracy": self.accuracy, "feature_scale": self.feature_scale}
        atomic_write(stem.with_suffix(".json"), json.dumps(meta, indent=1))

    def identity(self) -> dict:
        """Everything that determines the features (for the feature cache and result rows)."""
        if self._weights_hash is None:
            self._weights_hash = hash_module(self.net)
        return {**self.key, "feature_scale": self.feature_scale, "weights_sha256": self._weights_hash}

    @property
    def id(self) -> str:
        return f"domain-{hash_key(self.key)[:12]}"

    @torch.no_grad()
    def embed(self, x_unit: torch.Tensor) -> Tuple[torch.Tensor, torch.Tensor]:
        """One batch of images in [0, 1] -> (scaled features, logits), float32 on CPU."""
        expect = tuple(self.key["shape"])
        if tuple(x_unit.shape[1:]) != expect:
            raise ValueError(f"domain extractor trained on images {expect}, got {tuple(x_unit.shape[1:])}")
        f, logits = predict(self.net, x_unit, self.batch_size, progress=False)
        return f / self.feature_scale, logits

    def features(self, images) -> np.ndarray:
        """uint8 levels or floats in [0, 1] -> N x feature_dim float32 features."""
        return self.embed(as_unit(images, self.levels))[0].numpy()

    def logits(self, images) -> np.ndarray:
        return self.embed(as_unit(images, self.levels))[1].numpy()
