"""Paper claims as checks on measured values over seeds.

A claim compares models on one metric.  With the values of each model over seeds, a claim is
``reproduced`` when every seed of the first model is better than every seed of the second (the
seed ranges do not overlap, in the claimed direction), ``not reproduced`` when the ranges do not
overlap in the other direction, and ``inconclusive`` when they overlap (or a value is missing).
"""
from __future__ import annotations

from dataclasses import dataclass
from statistics import mean
from typing import Callable, Dict, List, Optional, Tuple

from metrics.keys import DIRECTION

#: model -> metric -> values over seeds
Values = Dict[str, Dict[str, List[float]]]
Verdict = Tuple[str, dict]


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    check: Callable[[Values], Verdict]


def _better(metric: str, a: float, b: float) -> bool:
    return a > b if DIRECTION.get(metric, "higher") == "higher" else a < b


def _vals(values: Values, model: str, metric: str) -> List[float]:
    return list(values.get(model, {}).get(metric, []))


def _evidence(values: Values, models, metric) -> dict:
    ev = {}
    for m in models:
        v = _vals(values, m, metric)
        ev[m] = {"metric": metric, "mean": mean(v) if v else None, "values": v, "seeds": len(v)}
    return ev


def compare(values: Values, a: str, b: str, metric: str) -> str:
    va, vb = _vals(values, a, metric), _vals(values, b, metric)
    if not va or not vb:
        return "inconclusive"
    if all(_better(metric, x, y) for x in va for y in vb):
        return "reproduced"
    if all(_better(metric, y, x) for x in va for y in vb):
        return "not reproduced"
    return "inconclusive"


def combine(statuses: List[str]) -> str:
    if all(s == "reproduced" for s in statuses):
        return "reproduced"
    if any(s == "not reproduced" for s in statuses):
        return "not reproduced"
    return "inconclusive"


def beats(a: str, b: str, *metrics: str, text: Optional[str] = None, cid: Optional[str] = None) -> Claim:
    """``a`` is better than ``b`` on every one of ``metrics``."""
    def check(values: Values) -> Verdict:
        parts = {m: compare(values, a, b, m) for m in metrics}
        ev = {m: {"status": parts[m], **_evidence(values, (a, b), m)} for m in metrics}
        return combine(list(parts.values())), ev
    return Claim(cid or f"{a}-beats-{b}-on-{'-'.join(metrics)}",
                 text or f"{a} beats {b} on {', '.join(metrics)}", check)


def between(mid: str, lo: str, hi: str, *metrics: str, text: str, cid: str) -> Claim:
    """``mid`` lies between ``lo`` (worse) and ``hi`` (better) on every metric."""
    def check(values: Values) -> Verdict:
        parts = {}
        for m in metrics:
            parts[m] = combine([compare(values, mid, lo, m), compare(values, hi, mid, m)])
        ev = {m: {"status": parts[m], **_evidence(values, (lo, mid, hi), m)} for m in metrics}
        return combine(list(parts.values())), ev
    return Claim(cid, text, check)


def all_of(cid: str, text: str, *claims: Claim) -> Claim:
    def check(values: Values) -> Verdict:
        results = [c.check(values) for c in claims]
        return combine([s for s, _ in results]), {c.id: {"status": s, **e} for c, (s, e) in zip(claims, results)}
    return Claim(cid, text, check)
