"""Constraints on configuration fields, declared beside their defaults and checked before any work.

A config dataclass field declared with :func:`opt` carries its valid range or choices in the field's
metadata; :func:`check` returns one message per violated field.  The configuration layer
(``protocols.config``) checks every section of every cell before anything is loaded or trained, so a bad
value (``train.steps=0``, ``model.width=0``, ``eval.select=nosuch``) is a one-line error up front rather
than a ``ZeroDivisionError`` hours later.  Torch-free, so model configs can use it too.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Any, Iterable, List, Optional, Sequence


def opt(default: Any, *, min: Optional[float] = None, max: Optional[float] = None,  # noqa: A002
        below: Optional[float] = None, choices: Optional[Sequence[Any]] = None, above: Optional[float] = None):
    """A dataclass field with a default and its constraints: ``min``/``max`` (inclusive), ``above``/``below``
    (exclusive), ``choices`` (the valid values)."""
    meta = {k: v for k, v in (("min", min), ("max", max), ("above", above), ("below", below),
                              ("choices", tuple(choices) if choices is not None else None)) if v is not None}
    return dataclasses.field(default=default, metadata={"check": meta})


def violation(value: Any, rule: dict) -> Optional[str]:
    """Why ``value`` breaks ``rule`` (the metadata of :func:`opt`), or None."""
    if "choices" in rule:
        return None if value in rule["choices"] else f"must be one of {', '.join(map(str, rule['choices']))}"
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    if isinstance(value, float) and not math.isfinite(value):
        return "must be a finite number"
    if "min" in rule and value < rule["min"]:
        return f"must be >= {rule['min']}"
    if "max" in rule and value > rule["max"]:
        return f"must be <= {rule['max']}"
    if "above" in rule and not value > rule["above"]:
        return f"must be > {rule['above']}"
    if "below" in rule and not value < rule["below"]:
        return f"must be < {rule['below']}"
    return None


def check(obj: Any, section: str, only: Optional[Iterable[str]] = None) -> List[str]:
    """One message per field of dataclass ``obj`` (named ``section.field``) whose value breaks its rule."""
    names = None if only is None else set(only)
    out = []
    for f in dataclasses.fields(obj):
        rule = f.metadata.get("check")
        if not rule or (names is not None and f.name not in names):
            continue
        value = getattr(obj, f.name)
        why = violation(value, rule)
        if why:
            out.append(f"{section}.{f.name}={value!r} {why}")
    return out
