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


def comparison(values: Values, a: str, b: str, metric: str) -> dict:
    """Evidence of one pairwise comparison: "a better than b on metric", with every seed's value."""
    va, vb = _vals(values, a, metric), _vals(values, b, metric)
    return {"metric": metric, "direction": DIRECTION.get(metric, "higher"), "better": a, "worse": b,
            "better_values": va, "worse_values": vb, "better_mean": mean(va) if va else None,
            "worse_mean": mean(vb) if vb else None, "status": compare(values, a, b, metric)}


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
        comps = [comparison(values, a, b, m) for m in metrics]
        return combine([c["status"] for c in comps]), {"comparisons": comps}
    return Claim(cid or f"{a}-beats-{b}-on-{'-'.join(metrics)}",
                 text or f"{a} beats {b} on {', '.join(metrics)}", check)


def between(mid: str, lo: str, hi: str, *metrics: str, text: str, cid: str) -> Claim:
    """``mid`` lies between ``lo`` (worse) and ``hi`` (better) on every metric."""
    def check(values: Values) -> Verdict:
        comps = [c for m in metrics for c in (comparison(values, mid, lo, m), comparison(values, hi, mid, m))]
        return combine([c["status"] for c in comps]), {"comparisons": comps}
    return Claim(cid, text, check)


def all_of(cid: str, text: str, *claims: Claim) -> Claim:
    """Every sub-claim holds; the evidence concatenates their comparisons."""
    def check(values: Values) -> Verdict:
        results = [c.check(values) for c in claims]
        comps = [x for _, e in results for x in e.get("comparisons", [])]
        return combine([s for s, _ in results]), {"comparisons": comps}
    return Claim(cid, text, check)
