"""Search spaces of the equal-budget tuning studies (``python -m protocols.run --tune N``), declared beside each
model's registration like its presets (:mod:`models.ade`), as plain data: this module imports neither torch nor
Optuna (:mod:`protocols.tuning` turns a space into Optuna distributions).

A space is a tuple of :class:`Knob` s.  One shared core every compared model has (:data:`CORE`: the learning rate
of the generative model, Adam/Adamax betas), the knobs of a model with a discriminator (:data:`ADVERSARIAL`: its
learning rate, discriminator steps per generator step, gradient-penalty weight) and the hybrids' extras
(:data:`HYBRID`: adversarial weight, likelihood scaling).  The ranges follow Lucic et al., "Are GANs Created
Equal?" (NeurIPS 2018; google/compare_gan ``src/params.py``): learning rates log-uniform 1e-4..1e-2 (theirs
1e-5..1e-2; below 1e-4 nothing trains in a cpu-budget run), beta1 uniform 0..0.9 (theirs 0..1), discriminator
iterations 1..5, gradient-penalty weight log-uniform 0.1..100.

Equal tuning: a study over several models refuses spaces that differ in a knob they share
(:func:`check_equal`); a knob only some of them have (the VAE has no discriminator) is not a difference.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Any, Dict, Iterable, List, Mapping, Sequence, Tuple

from common.registry import Registry

KINDS = ("float", "int", "choice")
#: a knob's key: a config key (``train.lr``, ``model.gp_weight``) or one phase's learning rate (``phase_lr.disc``)
PHASE_LR = "phase_lr."


class SpaceError(ValueError):
    """A bad space or knob; ``str()`` is one line that says what to do."""


@dataclass(frozen=True)
class Knob:
    name: str
    key: str                        # the config key it sets (``phase_lr.<phase>``: that phase's rate)
    kind: str                       # float | int | choice
    low: float = 0.0
    high: float = 0.0
    log: bool = False               # log-uniform (floats and ints)
    choices: Tuple[Any, ...] = ()
    about: str = ""

    def check(self) -> "Knob":
        if self.kind not in KINDS:
            raise SpaceError(f"knob {self.name}: kind {self.kind!r} is not one of {', '.join(KINDS)}")
        if self.kind == "choice":
            if not self.choices:
                raise SpaceError(f"knob {self.name}: an empty set of choices; give at least one")
            return self
        if not (math.isfinite(self.low) and math.isfinite(self.high)) or self.low >= self.high:
            raise SpaceError(f"knob {self.name}: the range [{self.low:g}, {self.high:g}] is empty; give LOW:HIGH "
                             f"with LOW < HIGH")
        if self.log and self.low <= 0:
            raise SpaceError(f"knob {self.name} is log-uniform: its low end must be > 0, not {self.low:g}")
        if self.kind == "int" and (self.low != int(self.low) or self.high != int(self.high)):
            raise SpaceError(f"knob {self.name} takes whole numbers: give integer ends, not {self.low:g}:{self.high:g}")
        return self

    def describe(self) -> str:
        if self.kind == "choice":
            return "one of " + ", ".join(map(str, self.choices))
        scale = "log-uniform" if self.log else "uniform"
        kind = " integers" if self.kind == "int" else ""
        return f"{scale}{kind} [{self.low:g}, {self.high:g}]"

    def signature(self) -> Dict[str, Any]:
        """What makes two knobs of this name the same search (the key, the distribution)."""
        return {"key": self.key, "kind": self.kind, "low": self.low, "high": self.high, "log": self.log,
                "choices": list(self.choices)}


Space = Tuple[Knob, ...]

SPACES: Registry[Space] = Registry("search space")


def register_space(model: str, *knobs: Knob) -> Space:
    """Declare ``model``'s search space (beside its registration); names registered with ``base=`` inherit it."""
    names = [k.name for k in knobs]
    if len(set(names)) != len(names):
        raise SpaceError(f"search space of {model}: a knob is listed twice ({', '.join(names)})")
    return SPACES.add(model, tuple(k.check() for k in knobs))


def space_for(model: str) -> Space:
    """The space declared for ``model`` or for the nearest name its presets extend (``avade-rd``: ``avade``'s)."""
    from .base import preset_chain
    for name in reversed(preset_chain(model)):
        if name in SPACES:
            return SPACES.get(name)
    raise SpaceError(f"no search space is declared for {model} (nor for a model it extends); declare one beside its "
                     f"registration with models.spaces.register_space, or tune other models (--model)")


def check_equal(spaces: Mapping[str, Space]) -> None:
    """Refuse spaces that differ in a knob two models share (equal tuning means equal spaces there)."""
    seen: Dict[str, Tuple[str, Knob]] = {}
    for model, space in spaces.items():
        for k in space:
            if k.name in seen and seen[k.name][1].signature() != k.signature():
                other, ko = seen[k.name]
                raise SpaceError(f"unequal tuning: knob {k.name} is {ko.describe()} of {ko.key} for {other} but "
                                 f"{k.describe()} of {k.key} for {model}; give them the same space (--space "
                                 f"{k.name}=LOW:HIGH sets it for every model)")
            seen.setdefault(k.name, (model, k))


# ---- narrowing a space from the command line (--space KNOB=LOW:HIGH | A|B | off) --------------------------------
def parse_spec(text: str) -> Tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip() or not value.strip():
        raise SpaceError(f"bad --space {text!r}: use KNOB=LOW:HIGH, KNOB=A|B (choices) or KNOB=off")
    return name.strip(), value.strip()


def narrowed(knob: Knob, value: str) -> Knob | None:
    """``knob`` with the range or choices of ``value`` (None: ``off``, the knob keeps its preset value)."""
    if value.lower() == "off":
        return None
    if knob.kind == "choice":
        return replace(knob, choices=tuple(c for c in value.split("|") if c)).check()
    low, sep, high = value.partition(":")
    try:
        lo, hi = float(low), float(high)
    except ValueError:
        lo = hi = float("nan")
    if not sep or not (math.isfinite(lo) and math.isfinite(hi)):
        raise SpaceError(f"--space {knob.name}={value}: give LOW:HIGH numbers (e.g. {knob.low:g}:{knob.high:g}) or off")
    return replace(knob, low=lo, high=hi).check()


def apply_specs(spaces: Mapping[str, Space], specs: Sequence[str]) -> Dict[str, Space]:
    """Every model's space with the ``--space`` specs applied (each reaches every model that has the knob); an unknown
    knob is an error naming the valid ones."""
    out = {m: list(s) for m, s in spaces.items()}
    known = sorted({k.name for s in spaces.values() for k in s})
    for text in specs:
        name, value = parse_spec(text)
        if name not in known:
            raise SpaceError(f"unknown knob {name!r} in --space; knobs of this study: {', '.join(known)}")
        for model, knobs in out.items():
            out[model] = [k2 for k in knobs for k2 in ([narrowed(k, value)] if k.name == name else [k])
                          if k2 is not None]
    return {m: tuple(s) for m, s in out.items()}


# ---- a trial's values as config keys -------------------------------------------------------------------------
def settings(space: Iterable[Knob], params: Mapping[str, Any]) -> Dict[str, Any]:
    """``{config key: value}`` of one trial: each knob's value at its key; the phase rates joined into
    ``train.phase_lr`` (``disc=0.0012``; the phases not named keep ``train.lr``)."""
    out: Dict[str, Any] = {}
    phases: List[str] = []
    for k in space:
        if k.name not in params:
            continue
        v = params[k.name]
        if k.key.startswith(PHASE_LR):
            phases.append(f"{k.key[len(PHASE_LR):]}={float(v)!r}")
        else:
            out[k.key] = v
    if phases:
        out["train.phase_lr"] = ",".join(sorted(phases))
    return out


def keys_of(space: Iterable[Knob]) -> List[str]:
    """The config keys a space sets (``train.phase_lr`` for the phase rates)."""
    return sorted({"train.phase_lr" if k.key.startswith(PHASE_LR) else k.key for k in space})


# ---- the knobs: a shared core, a discriminator's, the hybrids' ------------------------------------------------
CORE: Space = (
    Knob("lr", "train.lr", "float", 1e-4, 1e-2, log=True,
         about="learning rate of the generative model (phases gen / main; the GAN's inference network too)"),
    Knob("beta1", "train.beta1", "float", 0.0, 0.9, about="Adam/Adamax beta1"),
    Knob("beta2", "train.beta2", "float", 0.9, 0.999, about="Adam/Adamax beta2"),
)
ADVERSARIAL: Space = (
    Knob("disc_lr", PHASE_LR + "disc", "float", 1e-4, 1e-2, log=True, about="learning rate of the discriminator"),
    Knob("disc_steps", "train.disc_steps", "int", 1, 5, about="discriminator updates per generator update"),
    Knob("gp_weight", "model.gp_weight", "float", 0.1, 100.0, log=True, about="gradient-penalty weight"),
)
HYBRID: Space = (
    Knob("adv_weight", "model.adv_weight", "float", 1.0, 1000.0, log=True,
         about="weight of the adversarial loss L_Q against the likelihood L_C"),
    Knob("lc_scale", "model.lc_scale", "choice", choices=("per_dim", "per_image"),
         about="L_C in nats per dimension or per image (the adversarial weight's scale)"),
)
