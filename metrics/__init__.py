"""Evaluation suite (registry: ``METRICS``): IS, FID, KID, PRD, prdc, and Vendi, MMD (CMMD's estimator) and the
memorization tests AuthPct, C_T, FLD (with the training set), on features of an extractor: ``inception``,
``dinov2``, ``clip`` (local weights files), ``domain`` or ``selfsup`` (trained on the data); held-out BPD;
GAN-train/GAN-test; Table 7 sensitivity.

Imports no ``protocols`` or ``leaderboard``: it takes arrays, folders, features or any object
with ``sample(n, labels=None)`` / ``nll(x, k)``.  Result keys are the constants of
``metrics.keys``.  Entry points: :func:`evaluate` (and ``python -m metrics``),
:func:`heldout_bpd_bounds`, :func:`gan_train_test`, :func:`subset_sensitivity`,
:class:`DomainExtractor`, :class:`InceptionExtractor`.

Lazy (PEP 562): ``import metrics`` and ``import metrics.keys`` load no torch, so the leaderboard
can read the key constants without it; the first access to any other name imports its module.
"""
from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import TYPE_CHECKING, Any

from . import keys

_HOME = {  # exported name -> module that defines it
    **dict.fromkeys(("DEFAULT_METRICS", "DEFAULT_PARAMS", "Evaluation", "METRICS", "compute_metrics", "evaluate",
                     "evaluate_detailed", "features_of", "load_extractor"), ".api"),   # .api registers the metrics
    **dict.fromkeys(("heldout_bpd", "heldout_bpd_bounds"), ".bpd"),
    **dict.fromkeys(("DomainExtractor", "Features", "InceptionExtractor", "Recipe", "SelfSupExtractor"), ".features"),
    **dict.fromkeys(("GanTrainTest", "gan_train_test"), ".gan_train_test"),
    "register_metric": ".registry",
    **dict.fromkeys(("subset_scores", "subset_sensitivity"), ".sensitivity"),
}

__all__ = sorted([*_HOME, "keys"])


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(_HOME[name], __name__), name)
    globals()[name] = value                      # later accesses skip this function
    return value


def __dir__() -> list:
    return sorted(set(globals()) | set(__all__))


class _Package(ModuleType):
    """Keeps ``metrics.gan_train_test`` the function when its submodule of the same name is imported
    (the import system binds a submodule on its package; the eager ``from .x import x`` used to undo that)."""

    def __setattr__(self, name: str, value: Any) -> None:
        if isinstance(value, ModuleType) and _HOME.get(name) == "." + name and hasattr(value, name):
            value = getattr(value, name)
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


if TYPE_CHECKING:  # for type checkers and IDEs only
    from .api import DEFAULT_METRICS, DEFAULT_PARAMS, METRICS, Evaluation, compute_metrics  # noqa: F401
    from .api import evaluate, evaluate_detailed, features_of, load_extractor  # noqa: F401
    from .bpd import heldout_bpd, heldout_bpd_bounds  # noqa: F401
    from .features import DomainExtractor, Features, InceptionExtractor, Recipe, SelfSupExtractor  # noqa: F401
    from .gan_train_test import GanTrainTest, gan_train_test  # noqa: F401
    from .registry import register_metric  # noqa: F401
    from .sensitivity import subset_scores, subset_sensitivity  # noqa: F401
