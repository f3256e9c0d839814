"""Python API of the evaluation suite; the CLI (metrics/cli.py) is a thin shell over it.

Data flow (docs/design.md): samples -> features once per sample set (cached) -> every requested
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
from numbers import Integral
from pathlib import Path
from typing import Any, Dict, Mapping, Optional, Sequence, Tuple

import numpy as np
import torch

from common.io import atomic_write

from .suite import DEFAULT_PARAMS, check_sizes, evaluation_scope, resolve_params  # noqa: F401  (registers the metrics)
from .cache import hash_array, hash_module
from .features import PRETRAINED, DomainExtractor, Features, InceptionExtractor, SelfSupExtractor, extract
from .images import load_images, sample_levels, to_levels
from .prd import plot_prd
from . import keys
from .registry import METRICS

DEFAULT_METRICS = ("fid", "kid", "is", "prd", "prdc")
#: non-scalar outputs of registered metrics -> their name in ``Evaluation.curves``
CURVES = {"prd_curve": "prd", "class_shares": "classes", "nearest_train": "nearest_train"}
SAMPLE_BATCH = 500


@dataclass
class Evaluation:
    values: Dict[str, float]                                   # keyed by metrics/keys.py constants
    curves: Dict[str, Tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # "prd": (precision, recall),
    #                                                          "classes": (sample shares, real shares) per class
    meta: dict = field(default_factory=dict)                   # extractor id/identity, sample counts, seed, params


def load_extractor(extractor, *, levels: int, seed: int = 0, cache_dir=None, inception_weights=None,
                   train: Optional[tuple] = None, heldout: Optional[tuple] = None, device=None, progress: bool = True,
                   weights=None):
    """An extractor object, or one built from its name: "inception", "dinov2", "clip" (a local weights file:
    ``weights``, or ``inception_weights`` for Inception) or "domain" (needs ``train=(x, y)`` uint8 images and
    labels; ``heldout=(x, y)`` measures its accuracy)."""
    if not isinstance(extractor, str):
        return extractor
    if extractor == "inception":
        return InceptionExtractor(inception_weights or weights, device=device)
    if extractor in PRETRAINED:
        return PRETRAINED.get(extractor)(weights, device=device)
    if extractor == "selfsup":
        if train is None:
            raise ValueError("the self-supervised extractor is trained on real images: pass train=x (CLI: --train NPZ)")
        return SelfSupExtractor.fit_or_load(train[0] if isinstance(train, (tuple, list)) else train, levels, seed=seed,
                                            cache_dir=cache_dir, test_x=None if heldout is None else heldout[0],
                                            device=device, progress=progress)
    if extractor == "domain":
        if train is None or not isinstance(train, (tuple, list)) or train[1] is None:
            raise ValueError("the domain extractor is trained on labelled real data: pass train=(x, y) "
                             "(CLI: --train NPZ with arrays x and y)")
        hx, hy = heldout if heldout is not None else (None, None)
        return DomainExtractor.fit_or_load(train[0], train[1], levels, seed=seed, cache_dir=cache_dir,
                                           test_x=hx, test_y=hy, device=device, progress=progress)
    raise ValueError(f"unknown extractor {extractor!r}; valid extractors: "
                     f"{', '.join(sorted([*PRETRAINED, 'domain', 'selfsup']))}")


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
                    seed: int = 0, params: Optional[Mapping[str, Any]] = None,
                    train: Optional[Features] = None) -> Evaluation:
    """Every requested registered metric from one pair of feature sets (and, for the memorization metrics,
    ``train``: the training set's features from the same extractor).

    ``params``: metric parameters ``prd_clusters``, ``prd_runs``, ``prdc_k`` (defaults in
    ``metrics.suite.DEFAULT_PARAMS``); unknown keys and bad values are errors.
    """
    params = resolve_params(params)
    check_sizes(params, metrics, len(fake), len(real))
    _check_train(metrics, fake, train)
    for what, f in (("fake", fake), ("real", real), ("train", train)):
        if f is None:
            continue
        if not np.isfinite(f.features).all() or (f.logits is not None and not np.isfinite(f.logits).all()):
            raise ValueError(f"the {what} features or logits hold NaN or infinite values (extractor {f.extractor}); "
                             "metrics need finite features")
    values, curves = {}, {}
    for name in metrics:
        if METRICS.meta(name)["needs"] == "logits" and fake.logits is None:
            raise ValueError(f"metric {name!r} needs logits, which extractor {fake.extractor} did not give")
    with evaluation_scope(metrics):                  # metrics computed together share work (metrics/suite.py)
        for name in metrics:
            extra = (train,) if METRICS.meta(name)["needs"] == "train" else ()
            for k, v in METRICS.get(name)(fake, real, seed, params, *extra).items():
                if k in CURVES:
                    curves[CURVES[k]] = v
                else:
                    values[k] = float(v)
    meta = {"extractor": fake.extractor, "n_fake": len(fake), "n_real": len(real), "seed": seed,
            "metrics": list(metrics), "params": params}
    return Evaluation(values, curves, {**meta, "n_train": len(train)} if train is not None else meta)


def _check_train(metrics: Sequence[str], fake: Features, train: Optional[Features]) -> None:
    """The memorization metrics need the training set's features, from the fakes' extractor."""
    wanted = [m for m in metrics if METRICS.meta(m)["needs"] == "train"]
    if wanted and train is None:
        raise ValueError(f"metric(s) {', '.join(wanted)} compare the samples with the training set: pass train= "
                         "(CLI: --train NPZ)")
    if train is not None and train.extractor != fake.extractor:
        raise ValueError(f"training features come from {train.extractor}, samples' from {fake.extractor}")


def evaluate_detailed(fake, real, *, levels: int, extractor, metrics: Sequence[str] = DEFAULT_METRICS,
                      seed: int = 0, cache_dir=None, n_fake: Optional[int] = None, fake_labels=None,
                      inception_weights=None, train: Optional[tuple] = None, heldout: Optional[tuple] = None,
                      extractor_seed: int = 0, device=None, batch_size: int = 256, out_dir=None,
                      params: Optional[Mapping[str, Any]] = None, weights=None, clip=None) -> Evaluation:
    """:func:`evaluate` with the PRD curve and provenance; ``out_dir`` receives prd.png and prd_curve.npz.

    ``extractor_seed`` seeds a domain extractor built from its name (fixed across evaluation seeds,
    so that values of different seeds share one feature space).  ``params``: see :func:`compute_metrics`.
    ``train``: the training split, ``(x, y)`` or images alone (labels: only to train a domain extractor);
    the memorization metrics (authpct, ct, fld) compare the samples with its features.  ``weights``: the
    local file of a ``dinov2`` / ``clip`` / ``inception`` extractor named by ``extractor``.  ``clip``: a CLIP
    extractor or its weights file: adds CMMD (``keys.CMMD``, metrics/mmd.py on CLIP features) from one more
    pass over each set; ``meta["cmmd_extractor"]`` says which.
    """
    for name in metrics:
        METRICS.get(name)
    resolve_params(params)            # bad parameters and bad images fail before an extractor is built
    if isinstance(batch_size, bool) or not isinstance(batch_size, Integral) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    sources = (_source(fake, levels, n_fake, seed, fake_labels, "fake"),
               _source(real, levels, None, seed, None, "real"))
    train_x = train[0] if isinstance(train, (tuple, list)) else train
    memo = any(METRICS.meta(m)["needs"] == "train" for m in metrics)     # only these embed the training set
    train_src = _source(train_x, levels, None, seed, None, "train") if memo and train_x is not None else None
    ext = load_extractor(extractor, levels=levels, seed=extractor_seed, cache_dir=cache_dir,
                         inception_weights=inception_weights, train=train, heldout=heldout, device=device,
                         weights=weights)
    feats = [None if s is None else _features(s, ext, levels=levels, cache_dir=cache_dir, batch_size=batch_size)
             for s in (*sources, train_src)]
    result = compute_metrics(feats[0], feats[1], metrics, seed, params, train=feats[2])
    result.meta["extractor_identity"] = ext.identity()
    if clip is not None:
        _add_cmmd(result, clip, sources, levels=levels, cache_dir=cache_dir, batch_size=batch_size, device=device)
    if out_dir is not None and "prd" in result.curves:
        precision, recall = result.curves["prd"]
        atomic_write(Path(out_dir) / "prd_curve.npz", lambda f: np.savez(f, precision=precision, recall=recall))
        plot_prd({"fake": (precision, recall)}, Path(out_dir) / "prd.png")
    return result


def _add_cmmd(result: Evaluation, clip, sources, *, levels: int, cache_dir, batch_size: int, device) -> None:
    """CMMD: the MMD of metrics/mmd.py on CLIP embeddings of the same two sets (one more pass over each)."""
    from .mmd import compute_mmd
    ext = load_extractor("clip", levels=levels, weights=clip, device=device) if not hasattr(clip, "embed") else clip
    fake_f, real_f = (_features(s, ext, levels=levels, cache_dir=cache_dir, batch_size=batch_size) for s in sources)
    result.values[keys.CMMD] = compute_mmd(fake_f.features, real_f.features)
    result.meta["cmmd_extractor"] = {"id": ext.id, **ext.identity()}


def evaluate(fake, real, *, levels: int, extractor, metrics: Sequence[str] = DEFAULT_METRICS, seed: int = 0,
             cache_dir=None, params: Optional[Mapping[str, Any]] = None, **kwargs) -> Dict[str, float]:
    """{metrics/keys.py constant: value} of ``fake`` against ``real`` (keyword options: see evaluate_detailed)."""
    return evaluate_detailed(fake, real, levels=levels, extractor=extractor, metrics=metrics, seed=seed,
                             cache_dir=cache_dir, params=params, **kwargs).values
