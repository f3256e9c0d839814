"""Evaluation suite (registry: ``METRICS``): IS, FID, KID, PRD, prdc on features of the
``inception`` or ``domain`` extractor; held-out BPD; GAN-train/GAN-test; Table 7 sensitivity.

Imports no ``protocols`` or ``leaderboard``: it takes arrays, folders, features or any object
with ``sample(n, labels=None)`` / ``nll(x, k)``.  Result keys are the constants of
``metrics.keys``.  Entry points: :func:`evaluate` (and ``python -m metrics``),
:func:`heldout_bpd_bounds`, :func:`gan_train_test`, :func:`subset_sensitivity`,
:class:`DomainExtractor`, :class:`InceptionExtractor`.
"""
from . import keys
from .api import DEFAULT_METRICS, Evaluation, compute_metrics, evaluate, evaluate_detailed, features_of, load_extractor
from .bpd import heldout_bpd, heldout_bpd_bounds
from .features import DomainExtractor, Features, InceptionExtractor, Recipe
from .gan_train_test import GanTrainTest, gan_train_test
from .registry import METRICS, register_metric
from .sensitivity import subset_scores, subset_sensitivity

__all__ = ["DEFAULT_METRICS", "METRICS", "DomainExtractor", "Evaluation", "Features", "GanTrainTest",
           "InceptionExtractor", "Recipe", "compute_metrics", "evaluate", "evaluate_detailed", "features_of",
           "gan_train_test", "heldout_bpd", "heldout_bpd_bounds", "keys", "load_extractor", "register_metric",
           "subset_scores", "subset_sensitivity"]
