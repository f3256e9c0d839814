"""What each model trains at a budget: the table ``python -m protocols.run --list --budget B`` prints.

One row per registered model: its steps and batch size and its sizes, each followed by where the value comes from
(:func:`protocols.config.provenance`: budget, preset, recipe, protocol, ``--set``, or the config's default, the
paper's CIFAR-10 size).  A model's sizes are the integer fields of its config that a preset sets at some budget
(widths, latent sizes, blocks, the GAN's inference steps), so every budget lists the same ones.  Nothing is built
or loaded.
"""
from __future__ import annotations

from typing import Dict, List, Optional, Sequence

from .budgets import BUDGETS
from .config import dataset_resolution, preset_layers, provenance, resolve


def size_keys(model: str, resolution: int) -> List[str]:
    """The model-config keys a preset of ``model`` (or of a name it extends) sets at any budget, in preset order."""
    keys = [k for b in BUDGETS for _, layer in preset_layers(model, b, resolution) for k in layer if "." not in k]
    return list(dict.fromkeys(f"model.{k}" for k in keys))


def _sizes(prov: Dict[str, dict], keys: List[str]) -> str:
    """``k=v k=v (source); ...`` for the integer ones of ``keys``, grouped by source."""
    groups: Dict[str, List[str]] = {}
    for key in keys:
        value, source = prov[key]["value"], prov[key]["from"]
        if type(value) is int:
            groups.setdefault(source, []).append(f"{key[6:]}={value}")
    return "; ".join(f"{' '.join(kv)} ({source})" for source, kv in groups.items()) or "(no sizes)"


def budget_table(budget: str, dataset: str = "digits", models: Optional[Sequence[str]] = None,
                 recipe: Optional[str] = None, overrides=None) -> str:
    """The steps, batch and set sizes of ``models`` (default: every registered one) at ``budget`` on ``dataset``."""
    from models import MODELS
    rows = [f"budget {budget}, dataset {dataset}: each model's steps, batch and sizes, each value with its source"]
    names = list(models) if models else MODELS.names()
    width, res = max(len(n) for n in names) + 2, dataset_resolution(dataset)
    for name in names:
        prov = provenance(resolve(name, dataset=dataset, budget=budget, machine=False, recipe=recipe,
                                  overrides=overrides))
        steps, batch = prov["train.steps"], prov["train.batch_size"]
        rows.append(f"{name:<{width}}steps {steps['value']} ({steps['from']}), batch {batch['value']} "
                    f"({batch['from']}); {_sizes(prov, size_keys(name, res))}")
    return "\n".join(rows)
