"""Budget rules shared by several models' presets (each model's presets sit beside its registration).

A model's ``presets`` (``register_model(..., presets=...)``) say how it is sized and trained at each budget of
``protocols/budgets.py``: ``{"smoke": {...}, "cpu": {...}, "cpu@32": {...}, "paper": {...}}``.  Plain keys are
fields of the model's config (``width``), dotted keys trainer / evaluation keys (``train.steps``).  A budget may be
refined per image resolution (``"cpu@32"``: 32x32 data); the refinement wins.  ``base=`` names a registered
model whose presets a name extends (its own keys win).  Why each value is what it is: docs/results.md.
"""
from __future__ import annotations

from typing import Any, Dict

Presets = Dict[str, Dict[str, Any]]

#: the digits cpu budget: gradient penalty 10 instead of the paper's 100 (on 8x8, GP 100 kept every adversarial
#: model's discriminator at or above chance)
CPU_GP: Dict[str, Any] = {"gp_weight": 10.0}

#: L_C per dimension at the budgets below the paper's (as tuned here, before the per-image reading of Eq. 4 became
#: the default): with Adamax, the same as an adversarial weight of adv_weight x D per image (models/README.md)
PER_DIM: Dict[str, Any] = {"lc_scale": "per_dim"}

#: 32x32 at the cpu budget: one training budget for the five Table 1 models (1600 steps of batch 32, under one
#: epoch of Fashion-MNIST), channels-last convolutions, bf16 training losses where the CPU has native bf16
CPU32: Dict[str, Any] = {"train.steps": 1600, "train.batch_size": 32, "train.channels_last": True,
                         "train.autocast": "auto"}

#: equal tuning: every adversarial model at 32x32 gets the same two time-scale rule (Heusel et al. 2017: the
#: generator at a quarter of the discriminator's rate)
TTUR: Dict[str, Any] = {"train.phase_lr": "gen=5e-4"}

#: the residual discriminator of Table 2 (every rd model takes this width): the paper's 16, half on 8x8 digits
RD_WIDTH: Dict[str, int] = {"paper": 16, "smoke": 2, "cpu": 8, "cpu@32": 16}

#: Table 9: (scales, blocks) of f_psi for AV-ADE (a) and V-ADE (b)
TABLE9_AVADE = ((1, 2), (2, 2), (2, 4), (3, 3))
TABLE9_VADE = ((1, 2), (2, 2), (3, 2), (4, 1))


def rd_presets() -> Presets:
    """The residual D's width at each budget below the paper's (the paper's is the registration default)."""
    return {b: {"disc_width": w} for b, w in RD_WIDTH.items() if b != "paper"}


def merged(*layers: Presets) -> Presets:
    """Presets of several layers, later ones winning per budget key."""
    out: Presets = {}
    for layer in layers:
        for budget, keys in layer.items():
            out[budget] = {**out.get(budget, {}), **keys}
    return out
