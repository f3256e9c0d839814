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
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from common.io import atomic_write

from .suite import DEFAULT_PARAMS, check_sizes, evaluation_scope, resolve_params  # noqa: F401  (registers the metrics)
from .cache import hash_array, hash_module
from .features import DomainExtractor, Features, InceptionExtractor, extract
from .images import load_images, sample_levels, to_levels
from .prd import plot_prd
from .registry import METRICS

DEFAULT_METRICS = ("fid", "kid", "is", "prd", "prdc")
#: non-scalar outputs of registered metrics -> their name in ``Evaluation.curves``
CURVES = {"prd_curve": "prd", "class_shares": "classes"}
SAMPLE_BATCH = 500


@dataclass
class Evaluation:
    values: Dict[str, float]                                   # keyed by metrics/keys.py constants
    curves: Dict[str, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # "prd": (precision, recall),
    #                                                          "classes": (sample shares, real shares) per class
    meta: dict = field(default_factory=dict)                   # extractor id/identity, sample counts, seed, params


def load_extractor(extractor, *, levels: int, seed: int = 0, cache_dir=None, inception_weights=None,
                   train: Optional[tuple] = None, heldout: Optional[tuple] = None, device=None, progress: bool = True):
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
                                           test_x=hx, test_y=hy, device=device, progress=progress)
    raise ValueError(f"unknown extractor {extractor!r}; valid extractors: domain, inception")


def _source(images, levels: int, n: Optional[int], seed: int, labels, what: str):
    """Precomputed Features as given, else (cache key or None, thunk returning uint8 images); arrays,
    folders and .npz files are loaded and checked now, models are sampled by the thunk."""
    if isinstance(images, Features):
        return images
    if hasattr(images, "sample") and callable(images.sample):
        if n is None:
            raise ValueError("sampling a model needs n_fake (the number of samples to draw)")
        key = None
        if isinstance(images, torch.nn.Module):
            key = {"model": hash_module(images), "n": n, "seed": seed, "sample_batch": SAMPLE_BATCH,
                   "labels": None if labels is None else hash_array(torch.as_tensor(labels))}
        return key, lambda: sample_levels(images, n, levels, seed=seed, labels=labels, batch_size=SAMPLE_BATCH)
    x = load_images(images, levels)[0] if isinstance(images, (str, Path)) else to_levels(images, levels, what)
    return {"data": hash_array(x)}, lambda: x


def features_of(images, extractor, *, levels: int, seed: int = 0, cache_dir=None, n: Optional[int] = None,
                labels=None, batch_size: int = 256, what: str = "images") -> Features:
    """Features (and logits) of one sample set, computed once and cached (see module docstring);
    ``what`` names the set in error messages."""
    return _features(_source(images, levels, n, seed, labels, what), extractor, levels=levels, cache_dir=cache_dir,
                     batch_size=batch_size)


def _features(source, extractor, *, levels: int, cache_dir, batch_size: int) -> Features:
    if isinstance(source, Features):
        if source.extractor != extractor.id:
            raise ValueError(f"precomputed features come from {source.extractor}, not {extractor.id}")
        return source
    key, thunk = source
    return extract(extractor, thunk, levels, source=key, cache_dir=cache_dir if key else None,
                   batch_size=batch_size)


def compute_metrics(fake: Features, real: Features, metrics: Sequence[str] = DEFAULT_METRICS,
                    seed: int = 0, params: Optional[Mapping[str, Any]] = None) -> Evaluation:
    """Every requested registered metric from one pair of feature sets.

    ``params``: metric parameters ``prd_clusters``, ``prd_runs``, ``prdc_k`` (defaults in
    ``metrics.suite.DEFAULT_PARAMS``); unknown keys and bad values are errors.
    """
    params = resolve_params(params)
    check_sizes(params, metrics, len(fake), len(real))
    for what, f in (("fake", fake), ("real", real)):
        if not np.isfinite(f.features).all() or (f.logits is not None and not np.isfinite(f.logits).all()):
            raise ValueError(f"the {what} features or logits hold NaN or infinite values (extractor {f.extractor}); "
                             "metrics need finite features")
    values, curves = {}, {}
    for name in metrics:
        if METRICS.meta(name)["needs"] == "logits" and fake.logits is None:
            raise ValueError(f"metric {name!r} needs logits, which extractor {fake.extractor} did not give")
    with evaluation_scope(metrics):                  # metrics computed together share work (metrics/suite.py)
        for name in metrics:
            for k, v in METRICS.get(name)(fake, real, seed, params).items():
                if k in CURVES:
                    curves[CURVES[k]] = v
                else:
                    values[k] = float(v)
    return Evaluation(values, curves, {"extractor": fake.extractor, "n_fake": len(fake), "n_real": len(real),
                                       "seed": seed, "metrics": list(metrics), "params": params})


def evaluate_detailed(fake, real, *, levels: int, extractor, metrics: Sequence[str] = DEFAULT_METRICS,
                      seed: int = 0, cache_dir=None, n_fake: Optional[int] = None, fake_labels=None,
                      inception_weights=None, train: Optional[tuple] = None, heldout: Optional[tuple] = None,
                      extractor_seed: int = 0, device=None, batch_size: int = 256, out_dir=None,
                      params: Optional[Mapping[str, Any]] = None) -> Evaluation:
    """:func:`evaluate` with the PRD curve and provenance; ``out_dir`` receives prd.png and prd_curve.npz.

    ``extractor_seed`` seeds a domain extractor built from its name (fixed across evaluation seeds,
    so that values of different seeds share one feature space).  ``params``: see :func:`compute_metrics`.
    """
    for name in metrics:
        METRICS.get(name)
    resolve_params(params)            # bad parameters and bad images fail before an extractor is built
    sources = (_source(fake, levels, n_fake, seed, fake_labels, "fake"),
               _source(real, levels, None, seed, None, "real"))
    ext = load_extractor(extractor, levels=levels, seed=extractor_seed, cache_dir=cache_dir,
                         inception_weights=inception_weights, train=train, heldout=heldout, device=device)
    fake_f, real_f = (_features(s, ext, levels=levels, cache_dir=cache_dir, batch_size=batch_size) for s in sources)
    result = compute_metrics(fake_f, real_f, metrics, seed, params)
    result.meta["extractor_identity"] = ext.identity()
    if out_dir is not None and "prd" in result.curves:
        precision, recall = result.curves["prd"]
        atomic_write(Path(out_dir) / "prd_curve.npz", lambda f: np.savez(f, precision=precision, recall=recall))
        plot_prd({"fake": (precision, recall)}, Path(out_dir) / "prd.png")
    return result


def evaluate(fake, real, *, levels: int, extractor, metrics: Sequence[str] = DEFAULT_METRICS, seed: int = 0,
             cache_dir=None, params: Optional[Mapping[str, Any]] = None, **kwargs) -> Dict[str, float]:
    """{metrics/keys.py constant: value} of ``fake`` against ``real`` (keyword options: see evaluate_detailed)."""
    return evaluate_detailed(fake, real, levels=levels, extractor=extractor, metrics=metrics, seed=seed,
                             cache_dir=cache_dir, params=params, **kwargs).values
