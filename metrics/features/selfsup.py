"""``selfsup`` extractor: a denoising autoencoder trained on the dataset's own train split, without labels.

For data without labels (a ``folder:`` dataset of photos) the domain classifier cannot train, and without a
weights file there would be no feature space at all.  This one needs neither: the domain extractor's CNN
(metrics/features/classifier.py ``SmallCNN``, the recipe ``Recipe()``) is the encoder, its pre-ReLU feature
layer gives the features, and its "head" is a linear decoder from the ReLU'd features to the C x H x W pixels
(sigmoid), trained to reconstruct each training image from a copy with Gaussian noise of std ``NOISE``
added (a denoising autoencoder, Vincent et al., ICML 2008), mean squared error, with the classifier's
optimiser, schedule and step count.  Its quality on held-out images (the test split when given, else a
seeded 10% of train left out of training) is the reconstruction R^2 in percent, 100 (1 - SSE / SST) with
SST around the held-out per-pixel mean; it is stored where the classifier stores its accuracy, and the page
names the space "self-supervised (denoising autoencoder)" with that R^2.

Numbers in this space are comparable only with numbers in the same space (same data, seed, recipe, thread
count: the cache key and ``id``, as the domain extractor's).  Features are divided by the RMS of the
training features, as the domain extractor's.  No logits: IS is not measured in this space.
"""
from __future__ import annotations

import math
from typing import Optional, Tuple

import torch
import torch.nn.functional as F

from common.progress import progress_bar

from ..cache import hash_array, hash_key
from ..images import as_unit, check_uint8
from .classifier import Recipe, _memory_format, predict
from .domain import HOLDOUT_FRACTION, SCALE_IMAGES, DomainExtractor, training_context

NOISE = 0.1        # std of the Gaussian noise added to the inputs (images in [0, 1])


def _split(train_x, test_x, seed: int):
    if test_x is not None:
        return train_x, test_x
    perm = torch.randperm(len(train_x), generator=torch.Generator().manual_seed(seed))
    n_hold = max(1, int(round(HOLDOUT_FRACTION * len(train_x))))
    return train_x[perm[n_hold:]], train_x[perm[:n_hold]]


def reconstruct(net, x_unit: torch.Tensor, batch_size: int = 128) -> torch.Tensor:
    return torch.sigmoid(predict(net, x_unit, batch_size, progress=False)[1]).view_as(x_unit)


def r2_percent(net, x_unit: torch.Tensor) -> float:
    """100 (1 - SSE / SST) of the reconstructions of held-out images (SST around their per-pixel mean)."""
    x = x_unit.float()
    sse = float((reconstruct(net, x) - x).double().pow(2).sum())
    sst = float((x - x.mean(0, keepdim=True)).double().pow(2).sum())
    return 100.0 * (1.0 - sse / max(sst, 1e-12))


def train_autoencoder(x_unit: torch.Tensor, *, seed: int, recipe: Recipe, device, progress: bool,
                      desc: str) -> torch.nn.Module:
    """The encoder + linear decoder trained on denoising (see the module docstring); eval mode."""
    x_unit = x_unit.float()
    c, h, w = x_unit.shape[1:]
    gen = torch.Generator().manual_seed(seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        net = recipe.build(c, h, c * h * w).to(device)
    fmt, steps, bs = _memory_format(net), recipe.steps(len(x_unit)), min(recipe.batch_size, len(x_unit))
    opt = torch.optim.AdamW(net.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / max(1, steps))))
    net.train()
    with progress_bar(steps, desc, enabled=progress, unit="step") as bar:
        for s in range(steps):
            xb = x_unit[torch.randint(len(x_unit), (bs,), generator=gen)].to(device)
            noisy = (xb + NOISE * torch.randn(xb.shape, generator=gen).to(device)).contiguous(memory_format=fmt)
            loss = F.mse_loss(torch.sigmoid(net(noisy)).view_as(xb), xb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            bar.update(1)
    return net.eval()


class SelfSupExtractor(DomainExtractor):
    """Scaled encoder features (no logits) of the denoising autoencoder; cached as the domain extractor is."""

    name = "selfsup"
    label = "self-supervised (denoising autoencoder)"
    quality = "held-out reconstruction R\u00b2"

    @classmethod
    def fit_or_load(cls, train_x, levels: int, *, seed: int, cache_dir, dataset_hash: Optional[str] = None,
                    test_x=None, recipe: Recipe = Recipe(), device=None, progress: bool = True,
                    label: str = "self-supervised extractor") -> "SelfSupExtractor":
        train_x = check_uint8(torch.as_tensor(train_x), levels, "train_x")
        test_x = None if test_x is None else check_uint8(torch.as_tensor(test_x), levels, "test_x")
        device = torch.device(device) if device is not None else torch.device("cpu")
        data = dataset_hash or hash_key({"train": hash_array(train_x),
                                         "test": None if test_x is None else hash_array(test_x)})
        c, h, w = train_x.shape[1:]
        key = {"extractor": cls.name, "dataset": data, "seed": seed, "levels": levels, "shape": [c, h, w],
               "n_classes": c * h * w, "heldout": "test" if test_x is not None else f"train{HOLDOUT_FRACTION}",
               "objective": f"denoising mse, noise {NOISE}", **recipe.key(), **training_context(device)}
        stem = None if cache_dir is None else cls._stem(cache_dir, key)
        if stem is not None and stem.with_suffix(".pt").exists() and stem.with_suffix(".json").exists():
            ext = cls._load(stem, key, levels, recipe, device)
            if ext is not None:
                return ext
        fit_x, held_x = _split(train_x, test_x, seed)
        net = train_autoencoder(as_unit(fit_x, levels), seed=seed, recipe=recipe, device=device, progress=progress,
                                desc=f"{label}: training a denoising autoencoder (seed {seed}) on {len(fit_x)} images")
        sub = fit_x[:SCALE_IMAGES] if len(fit_x) <= SCALE_IMAGES else fit_x[
            torch.randperm(len(fit_x), generator=torch.Generator().manual_seed(seed))[:SCALE_IMAGES]]
        feats = predict(net, as_unit(sub, levels), 128, progress=False)[0].double()
        ext = cls(net, levels, float(feats.pow(2).mean().sqrt().clamp_min(1e-12)),
                  r2_percent(net, as_unit(held_x, levels)), key)
        if stem is not None:
            ext._save(stem)
        return ext

    @staticmethod
    def _stem(cache_dir, key):
        from pathlib import Path
        return Path(cache_dir) / f"selfsup-{hash_key(key)}"

    @property
    def id(self) -> str:
        return f"selfsup-{hash_key(self.key)[:12]}"

    @torch.no_grad()
    def embed(self, x_unit: torch.Tensor) -> Tuple[torch.Tensor, None]:
        """One batch of images in [0, 1] -> (scaled encoder features, None), float32 on CPU."""
        return super().embed(x_unit)[0], None
