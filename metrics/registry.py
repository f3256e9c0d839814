"""The METRICS registry (STYLE habit 1): name -> function of precomputed features.

A registered metric is ``fn(fake: Features, real: Features, seed: int, params: dict) -> dict`` whose
float entries are keyed by metrics/keys.py constants (non-float entries, e.g. a PRD curve, are extras);
``params`` holds every metric parameter, resolved (metrics/suite.py ``DEFAULT_PARAMS``).
Meta: ``keys`` (result keys it fills), ``needs`` ("features", "logits", or "train": the memorization tests,
called as ``fn(fake, real, seed, params, train)`` with the training set's Features), ``description``.
Held-out BPD (metrics/bpd.py), GAN-train/test (metrics/gan_train_test.py) and the subset
sensitivity (metrics/sensitivity.py) take models or datasets rather than features and are called
directly.
"""
from __future__ import annotations

from typing import Sequence

from common.registry import Registry

METRICS = Registry("metric")
NEEDS = ("features", "logits", "train")


def register_metric(name: str, *, keys: Sequence[str], needs: str = "features", description: str = ""):
    if needs not in NEEDS:
        raise ValueError(f"needs must be one of {', '.join(NEEDS)}, got {needs!r}")
    return METRICS.register(name, keys=tuple(keys), needs=needs, description=description)
