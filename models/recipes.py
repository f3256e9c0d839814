"""Optimisation recipes: named sets of training and model keys layered over a model's presets.

A model's presets (:mod:`models.presets`) say how big it is and how long it trains at a budget, and also carry the
optimiser settings tuned here (the "as tuned here" reading: ``preset``).  A recipe replaces the optimisation part
with a published one, so that "as the paper set it" is one named thing beside "as tuned here" and every compared
model gets it alike:

* ``preset``: nothing (each model's presets as they are);
* ``paper``: Appendix C of the paper, registered beside the paper's models (:mod:`models.ade`);
* ``paper-gp10``: the same with gradient penalty 10, for the narrow cpu widths where GP 100 collapses.

Resolution order (protocols/config.py): budget, presets, **recipe**, protocol, ``--set``.  A recipe reaches only the
models it names (``scope``: model classes); others keep their presets (``RunConfig.recipe`` records ``preset``).
Plain keys are model-config fields (set where the model has them and uses them), dotted keys ``train.*`` /
``eval.*``.  The recipe's name is recorded with each run but not hashed: its values are.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Dict, Tuple

from common.registry import Registry

PRESET = "preset"


@dataclass(frozen=True)
class Recipe:
    name: str
    keys: Dict[str, Any] = field(default_factory=dict)   # plain: model fields; dotted: train./eval. keys
    scope: Tuple[type, ...] = ()                          # model classes it reaches; () = every model
    source: str = ""                                      # where its values come from (shown by --dry-run)
    default_for: Tuple[str, ...] = ()                     # budgets at which it is the default for its scope

    def reaches(self, model_cls: type) -> bool:
        return not self.scope or issubclass(model_cls, self.scope)


RECIPES: Registry[Recipe] = Registry("recipe")


def register_recipe(recipe: Recipe) -> Recipe:
    RECIPES.register(recipe.name, source=recipe.source)(recipe)
    return recipe


def derived(base: Recipe, name: str, source: str, **keys: Any) -> Recipe:
    """A sibling of ``base`` that changes ``keys`` (its scope and default budgets are not inherited)."""
    return Recipe(name, {**base.keys, **keys}, base.scope, source)


def recipe_for(name: str | None, model_cls: type, budget: str) -> Recipe:
    """The recipe a model gets: ``name`` where it reaches the model, else (or when ``name`` is None) the recipe that
    is the default for this budget and model, else ``preset``.  An unknown name is a one-line error."""
    if name is not None:
        r = RECIPES.get(name)
        return r if r.reaches(model_cls) else RECIPES.get(PRESET)
    for n in RECIPES.names():
        r = RECIPES.get(n)
        if budget in r.default_for and r.scope and r.reaches(model_cls):
            return r
    return RECIPES.get(PRESET)


register_recipe(Recipe(PRESET, source="each model's presets (as tuned here)"))
