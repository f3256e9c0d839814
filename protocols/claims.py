"""Paper claims as checks on measured values over seeds, that know the noise.

A claim compares models on one metric.  With the values of each model over seeds (one configuration per
model: :func:`protocols.verdicts.stored_values`), a comparison is

* ``reproduced`` when every seed of the first model is better than every seed of the second (the seed ranges
  do not overlap, in the claimed direction), ``not reproduced`` when they do not overlap the other way;
* ``inconclusive`` otherwise, and also, whatever the ranges, when the evidence cannot decide, with the reason
  recorded in the evidence (and shown on the page):

  - a value is missing;
  - a model has fewer than ``metrics.keys.MIN_SEEDS`` (3) seeds. The rule above is a permutation test: if the seeds of
    both models came from one distribution, all of ``a``'s would beat all of ``b``'s with probability
    1 / C(n_a + n_b, n_a), which is 1/20 for 3 seeds each but 1/6 for 2 (and with one seed the spread is
    unknown), so two seeds cannot give a verdict at the usual 5% level;
  - the metric was computed from fewer samples than it needs (FID or KID from fewer samples than feature
    dimensions: a rank-deficient covariance biases the value);
  - both models sit within the real-data floor's noise: the metric of real held-out images (the ``real``
    row, see :data:`FLOOR`) against the same reference, at the same sample count, is as far from either model
    as the models are from each other (both within two floor standard deviations, or within the floor's range
    when it has one seed).
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from math import comb
from statistics import mean, stdev
from typing import Callable, Dict, List, Optional, Tuple

from metrics.keys import FID, KID, MIN_SEEDS, direction

#: the pseudo-model whose rows are real images measured like samples (the floor of every sample metric)
FLOOR = "real"
#: metrics whose value is biased when computed from fewer samples than feature dimensions
NEEDS_N_ABOVE_DIM = (FID, KID)


class Values(dict):
    """model -> metric -> values over seeds, with ``meta[(model, metric)] = {"n": samples, "dim": feature dims}``."""

    def __init__(self, *args, meta: Optional[Dict[tuple, dict]] = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.meta: Dict[tuple, dict] = dict(meta or {})


Verdict = Tuple[str, dict]


@dataclass(frozen=True)
class Claim:
    id: str
    text: str
    check: Callable[[Values], Verdict]
    source: str = ""        # where the claim comes from when it is not the AV-ADE paper (e.g. "Kingma et al. 2021")


def _better(metric: str, a: float, b: float) -> bool:
    return a > b if (direction(metric) or "higher") == "higher" else a < b


def _vals(values: Values, model: str, metric: str) -> List[float]:
    return list(values.get(model, {}).get(metric, []))


def _thin(values: Values, model: str, metric: str) -> Optional[str]:
    meta = getattr(values, "meta", {}).get((model, metric), {})
    n, dim = meta.get("n"), meta.get("dim")
    if metric in NEEDS_N_ABOVE_DIM and n and dim and n < dim:
        return f"{model}'s {metric} comes from {n} samples of {dim}-d features (fewer samples than dimensions)"
    return None


def _within_floor(values: Values, va: List[float], vb: List[float], metric: str) -> bool:
    floor = _vals(values, FLOOR, metric)
    if not floor:
        return False
    centre = mean(floor)
    noise = 2 * stdev(floor) if len(floor) > 1 else (max(floor) - min(floor)) / 2
    noise = max(noise, max(floor) - centre, centre - min(floor))
    return all(abs(v - centre) <= noise for v in va + vb)


def too_few_seeds(counts: Dict[str, int], where: str = "per model") -> Optional[str]:
    """Why no verdict can be read from these seed counts (model -> seeds), or None when each has MIN_SEEDS."""
    few = min(counts, key=counts.get)
    n = counts[few]
    if n >= MIN_SEEDS:
        return None
    if n == 1:
        return f"one seed of {few}: the spread over seeds is unknown"
    chance = f" (ranges of {' and '.join(map(str, counts.values()))} seeds separate by chance 1 time in " \
             f"{comb(sum(counts.values()), n)}; of 3 and 3, 1 in 20)" if len(counts) == 2 else ""
    return f"{n} seeds of {few}: a verdict needs {MIN_SEEDS} {where}{chance}"


def compare(values: Values, a: str, b: str, metric: str) -> Tuple[str, str]:
    """(status, reason) of "a is better than b on metric"; the reason is empty for a clear verdict."""
    va, vb = _vals(values, a, metric), _vals(values, b, metric)
    if not va or not vb:
        return "inconclusive", f"no stored {metric} for {a if not va else b}"
    thin = _thin(values, a, metric) or _thin(values, b, metric)
    if thin:
        return "inconclusive", f"too few samples: {thin}"
    few = too_few_seeds({a: len(va), b: len(vb)})
    if few:
        return "inconclusive", few
    if _within_floor(values, va, vb, metric):
        return "inconclusive", f"both within the real-data floor's noise on {metric}"
    if all(_better(metric, x, y) for x in va for y in vb):
        return "reproduced", ""
    if all(_better(metric, y, x) for x in va for y in vb):
        return "not reproduced", ""
    return "inconclusive", f"{a} and {b} differ by less than their spread over seeds on {metric}"


def gap_interval(va: List[float], vb: List[float], metric: str, draws: int = 2000, seed: int = 0
                 ) -> Tuple[float, float, float]:
    """(gap, low, high): how much better ``va``'s mean is than ``vb``'s on ``metric`` (positive = a better) and a
    95% bootstrap interval over seeds (each model's seeds resampled with replacement, a fixed generator)."""
    sign = 1.0 if (direction(metric) or "higher") == "higher" else -1.0
    gap = sign * (mean(va) - mean(vb))
    rng = random.Random(seed)
    boots = sorted(sign * (mean(rng.choices(va, k=len(va))) - mean(rng.choices(vb, k=len(vb))))
                   for _ in range(draws))
    return gap, boots[int(0.025 * (draws - 1))], boots[int(0.975 * (draws - 1))]


def comparison(values: Values, a: str, b: str, metric: str) -> dict:
    """Evidence of one pairwise comparison: "a better than b on metric", with every seed's value, the gap of the
    means (positive when ``a`` is better) and its 95% bootstrap interval over seeds (with two seeds or more)."""
    va, vb = _vals(values, a, metric), _vals(values, b, metric)
    status, reason = compare(values, a, b, metric)
    out = {"metric": metric, "direction": direction(metric) or "higher", "better": a, "worse": b,
           "better_values": va, "worse_values": vb, "better_mean": mean(va) if va else None,
           "worse_mean": mean(vb) if vb else None, "status": status}
    if va and vb:
        gap, lo, hi = gap_interval(va, vb, metric)
        out["gap"] = gap
        if len(va) > 1 and len(vb) > 1:
            out["gap_ci95"] = [lo, hi]
    if reason:
        out["reason"] = reason
    floor = _vals(values, FLOOR, metric)
    if floor:
        out["floor_values"] = floor
    return out


def combine(statuses: List[str]) -> str:
    if all(s == "reproduced" for s in statuses):
        return "reproduced"
    if any(s == "not reproduced" for s in statuses):
        return "not reproduced"
    return "inconclusive"


def _verdict(comps: List[dict]) -> Verdict:
    evidence: dict = {"comparisons": comps}
    reasons = list(dict.fromkeys(c["reason"] for c in comps if c.get("reason")))
    status = combine([c["status"] for c in comps])
    if status == "inconclusive" and reasons:
        evidence["why_inconclusive"] = reasons
    return status, evidence


def beats(a: str, b: str, *metrics: str, text: Optional[str] = None, cid: Optional[str] = None,
          source: str = "") -> Claim:
    """``a`` is better than ``b`` on every one of ``metrics``."""
    def check(values: Values) -> Verdict:
        return _verdict([comparison(values, a, b, m) for m in metrics])
    return Claim(cid or f"{a}-beats-{b}-on-{'-'.join(metrics)}",
                 text or f"{a} beats {b} on {', '.join(metrics)}", check, source)


def between(mid: str, lo: str, hi: str, *metrics: str, text: str, cid: str) -> Claim:
    """``mid`` lies between ``lo`` (worse) and ``hi`` (better) on every metric."""
    def check(values: Values) -> Verdict:
        return _verdict([c for m in metrics for c in (comparison(values, mid, lo, m), comparison(values, hi, mid, m))])
    return Claim(cid, text, check)


def all_of(cid: str, text: str, *claims: Claim, source: str = "") -> Claim:
    """Every sub-claim holds; the evidence concatenates their comparisons."""
    def check(values: Values) -> Verdict:
        results = [c.check(values) for c in claims]
        return _verdict([x for _, e in results for x in e.get("comparisons", [])])
    return Claim(cid, text, check, source)


def faster(a: str, b: str, factor: float, metric: str, *, text: str, cid: str, source: str = "") -> Claim:
    """``a``'s ``metric`` (a rate, higher is faster) is at least ``factor`` times ``b``'s, for every pair of seeds."""
    def check(values: Values) -> Verdict:
        va, vb = _vals(values, a, metric), _vals(values, b, metric)
        ratios = [x / y for x in va for y in vb if y > 0]
        ev = {"metric": metric, "factor": factor, a: va, b: vb, "ratios": ratios}
        if not ratios:
            return "inconclusive", {**ev, "why_inconclusive": [f"no stored {metric} for {a if not va else b}"]}
        few = too_few_seeds({a: len(va), b: len(vb)})
        if few:
            return "inconclusive", {**ev, "why_inconclusive": [few]}
        if all(r >= factor for r in ratios):
            return "reproduced", ev
        if all(r < factor for r in ratios):
            return "not reproduced", ev
        return "inconclusive", {**ev, "why_inconclusive": [f"the ratio crosses {factor} between seeds"]}
    return Claim(cid, text, check, source)


def falls_with(model: str, metrics: List[str], *, text: str, cid: str, source: str = "") -> Claim:
    """``model``'s metric decreases along ``metrics`` (e.g. FID at 10, 25, 50 sampling steps), seed means."""
    def check(values: Values) -> Verdict:
        means = [(m, mean(_vals(values, model, m))) for m in metrics if _vals(values, model, m)]
        ev = {"model": model, "curve": dict(means)}
        if len(means) < 3:
            return "inconclusive", {**ev, "why_inconclusive": [f"fewer than 3 points of the curve for {model}"]}
        few = too_few_seeds({model: min(len(_vals(values, model, m)) for m in ev["curve"])},
                            "at every point of the curve")
        if few:
            return "inconclusive", {**ev, "why_inconclusive": [few]}
        ok = all(b[1] <= a[1] for a, b in zip(means, means[1:]))
        return ("reproduced" if ok else "not reproduced"), ev
    return Claim(cid, text, check, source)


# ---- claims along training --------------------------------------------------------------------------------
def at_snapshot(claim: Claim, values: Values, metrics: Tuple[str, ...]) -> Optional[dict]:
    """The claim on one snapshot's values, from its comparisons on ``metrics`` (those measured at snapshots)
    whose two models both have values there; None when no comparison can be made at snapshots."""
    _, evidence = claim.check(values)
    comps = [c for c in evidence.get("comparisons", []) if c["metric"] in metrics]
    kept = [c for c in comps if c["better_values"] and c["worse_values"]]
    if not kept:
        return None
    status, ev = _verdict(kept)
    left = sorted({f"{c['better'] if not c['better_values'] else c['worse']} {c['metric']}"
                   for c in comps if c not in kept})
    return {"status": status, "comparisons": [{k: c.get(k) for k in ("metric", "better", "worse", "status", "gap",
                                                                     "gap_ci95", "reason")} for c in kept],
            **({"why_inconclusive": ev["why_inconclusive"]} if "why_inconclusive" in ev else {}),
            **({"left_out": left} if left else {})}


def images_text(n: Optional[float]) -> str:
    if n is None:
        return "?"
    return f"{n / 1e6:.2g}M" if n >= 1e6 else (f"{n / 1e3:.3g}k" if n >= 1e3 else f"{int(n)}")


def where(p: dict) -> str:
    """Where along training a claim point is: training images seen (equal for the models compared), else the
    snapshot's fraction of each run."""
    return (f"{images_text(p['images'])} images" if p.get("images") is not None
            else f"snapshot {p['snapshot']}/{p.get('of', '?')}")


def trajectory(points: List[dict]) -> str:
    """One line for a claim's verdicts along training. ``points``: [{"snapshot", "of", "images", "status", "gap"}]
    in order, ``images`` a number (training images seen, equal for the models compared) or None (unequal)."""
    if not points:
        return "not evaluated along training"
    flips = [(p0, p1) for p0, p1 in zip(points, points[1:]) if p1["status"] != p0["status"]]
    if not flips:
        text = f"{points[0]['status']} at every snapshot ({where(points[0])} to {where(points[-1])})"
    else:
        parts = [f"{points[0]['status']} up to {where(flips[0][0])}"]
        parts += [f"{'flips' if {a['status'], b['status']} == {'reproduced', 'not reproduced'} else 'turns'} "
                  f"{b['status']} at {where(b)}" for a, b in flips]
        text = ", ".join(parts)
    gaps = [p.get("gap") for p in points[-3:] if p.get("gap") is not None]
    if len(gaps) >= 2 and abs(gaps[-1] - gaps[0]) > 1e-12:
        text += "; gap " + ("shrinking" if abs(gaps[-1]) < abs(gaps[0]) else "growing") + " at the end"
    return text
