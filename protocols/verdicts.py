"""Verdicts: a run's stored values per configuration (final and along training), its claims evaluated on
them (at the end and at every snapshot), and the summary table; never pooled across configurations."""
from __future__ import annotations

import json
from statistics import mean, stdev
from typing import Any, Dict, List, Optional, Tuple

from common.store import ResultsStore

from . import distributed as D
from .base import Protocol
from .claims import FLOOR, Values, at_snapshot, trajectory, where


# ---- stored values, claims and the summary, per configuration -----------------------------------------
def extra_space(extractor: str) -> bool:
    """Rows measured in an additional feature space beside the cell's own (``eval.dinov2_weights`` /
    ``eval.clip_weights``: extractor ids ``dinov2-...``, ``clip-...``)."""
    return (extractor or "").split("-")[0] in ("dinov2", "clip")


def stored_values(store: ResultsStore, groups: Dict[str, str]) -> Values:
    """model -> metric -> values over seeds, from the rows of each model's group (one configuration); when a
    seed was measured more than once (--fresh), its newest value counts.  ``meta`` holds each (model, metric)'s
    smallest sample count and feature dimension (claims refuse to decide on too few samples)."""
    by_key = {g: m for m, g in groups.items()}
    newest: Dict[tuple, dict] = {}
    rows = store.query("SELECT group_key, seed, metric, value, n_samples, extra, extractor FROM measurements WHERE "
                       "snapshot=0 AND group_key IN (%s) ORDER BY id" % ",".join("?" * len(by_key)),
                       tuple(by_key)) if by_key else []
    for r in rows:
        if extra_space(r["extractor"]):      # the DINOv2 / CLIP tables: claims are judged in the cell's own space
            continue
        newest[(by_key[r["group_key"]], r["seed"], r["metric"])] = r
    vals = Values()
    for (model, _seed, metric), r in sorted(newest.items(), key=lambda kv: kv[0]):
        vals.setdefault(model, {}).setdefault(metric, []).append(r["value"])
        dim = json.loads(r["extra"] or "{}").get("feature_dim")
        meta = vals.meta.setdefault((model, metric), {"n": r["n_samples"], "dim": dim})
        meta["n"] = min(meta["n"], r["n_samples"]) if meta["n"] else r["n_samples"]
    return vals


def snapshot_series(store: ResultsStore, groups: Dict[str, str]) -> Tuple[Dict[int, Values], Dict[int, dict]]:
    """Per snapshot index: model -> metric -> values over seeds (as :func:`stored_values`, from snapshot rows),
    and model -> mean training images seen there."""
    by_key = {g: m for m, g in groups.items()}
    if not by_key:
        return {}, {}
    rows = store.query("SELECT group_key, seed, metric, value, n_samples, extra, snapshot, images_seen FROM "
                       "measurements WHERE snapshot>0 AND group_key IN (%s) ORDER BY id"
                       % ",".join("?" * len(by_key)), tuple(by_key))
    series: Dict[int, Values] = {}
    images: Dict[int, Dict[str, List[int]]] = {}
    for r in rows:
        model = by_key[r["group_key"]]
        vals = series.setdefault(r["snapshot"], Values())
        vals.setdefault(model, {}).setdefault(r["metric"], []).append(r["value"])
        dim = json.loads(r["extra"] or "{}").get("feature_dim")
        vals.meta.setdefault((model, r["metric"]), {"n": r["n_samples"], "dim": dim})
        if r["images_seen"] >= 0:
            images.setdefault(r["snapshot"], {}).setdefault(model, []).append(r["images_seen"])
    seen = {i: {m: mean(v) for m, v in per.items()} for i, per in images.items()}
    return series, seen


def along_training(claim, series: Dict[int, Values], seen: Dict[int, dict], n_snapshots: int) -> Optional[dict]:
    """The claim at every snapshot: its verdict, the gap of its first comparison, the images seen; a one-line
    trajectory ("not reproduced up to 51k images, flips reproduced at 80k images")."""
    from .evaluate import SNAPSHOT_METRICS
    points = []
    for i in sorted(series):
        res = at_snapshot(claim, series[i], SNAPSHOT_METRICS)
        if res is None:
            continue
        models = {m for c in res["comparisons"] for m in (c["better"], c["worse"]) if m != FLOOR}
        imgs = {m: seen.get(i, {}).get(m) for m in sorted(models)}
        same = len({v for v in imgs.values()}) == 1 and None not in imgs.values()
        point = {"snapshot": i, "of": n_snapshots, "images": next(iter(imgs.values())) if same else None,
                 "images_by_model": imgs, "status": res["status"], "gap": res["comparisons"][0].get("gap"),
                 "detail": res}
        points.append({**point, "where": where(point)})
    if not points:
        return None
    return {"points": points, "summary": trajectory(points), "metrics": list(SNAPSHOT_METRICS)}


def evaluate_claims(p: Protocol, store: ResultsStore, dataset: str, budget: str, extractor: str,
                    groups: Dict[str, str], configs: Dict[str, str], n_snapshots: int = 0,
                    tuning: Optional[Dict[str, dict]] = None) -> List[dict]:
    """Every claim of ``p`` on the stored values of ``groups`` (one configuration per model), stored with its
    evidence; ``tuning`` (model -> how its configuration was tuned; a model not named: its presets) adds to each
    verdict how its sides were tuned and whether alike (:func:`tuning_evidence`)."""
    values = stored_values(store, groups)
    series, seen = snapshot_series(store, groups) if n_snapshots else ({}, {})
    out = []
    for c in p.claims:
        status, evidence = c.check(values)
        curve = along_training(c, series, seen, n_snapshots) if series else None
        if curve is not None:
            evidence = {**evidence, "along_training": curve}
        if c.source:
            evidence = {**evidence, "source": c.source}
        if tuning is not None:
            evidence = {**evidence, **tuning_evidence(evidence, tuning)}
        if D.is_main():
            store.add_claim(protocol=p.name, dataset=dataset, budget=budget, claim_id=c.id, text=c.text,
                            status=status, evidence=evidence, extractor=extractor, configs=configs)
        out.append({"id": c.id, "text": c.text, "status": status, "evidence": evidence, "configs": configs})
    return out


def claim_sides(evidence: dict) -> List[str]:
    """The models a verdict compares (the real-data floor left out), from its evidence."""
    models = [m for c in evidence.get("comparisons", []) for m in (c.get("better"), c.get("worse"))]
    if not models and "model" in evidence:
        models = [evidence["model"]]
    if not models:                  # a speed-ratio claim keys its two models' values by name
        models = [k for k, v in evidence.items() if isinstance(v, list) and k not in ("ratios", "why_inconclusive")]
    return [m for m in dict.fromkeys(models) if m and m != FLOOR]


PRESET_TUNING = {"how": "preset"}
#: what two sides must share to count as tuned alike (their spaces are equal where they share a knob by construction)
ALIKE = ("how", "trials", "criterion", "sampler", "pruner", "seed")


def tuning_evidence(evidence: dict, tuning: Dict[str, dict]) -> dict:
    """``{"tuning": {model: how}, "tuned_alike": bool}`` for the sides of one verdict; unequal tuning is named in
    ``tuning_note`` (e.g. one side searched by a study, the other at its presets)."""
    sides = {m: tuning.get(m, PRESET_TUNING) for m in claim_sides(evidence)}
    ways = {json.dumps({k: v.get(k) for k in ALIKE}, sort_keys=True) for v in sides.values()}
    out: dict = {"tuning": sides, "tuned_alike": len(ways) <= 1}
    if len(ways) > 1:
        out["tuning_note"] = "tuned unequally: " + "; ".join(f"{m} {how_tuned(v)}" for m, v in sides.items())
    return out


def how_tuned(t: dict) -> str:
    if t.get("how") != "study":
        return "at its presets"
    return (f"by study {t.get('study')} ({t.get('trials')} trials, {t.get('sampler')} sampler, criterion "
            f"{t.get('criterion')}, pruner {t.get('pruner')})")


def summarise(values: Values) -> Dict[str, Dict[str, Dict[str, Any]]]:
    table: Dict[str, Dict[str, Dict[str, Any]]] = {}
    for model, ms in values.items():
        for metric, v in ms.items():
            table.setdefault(model, {})[metric] = {"mean": mean(v), "std": stdev(v) if len(v) > 1 else None,
                                                   "n": len(v)}
    return table
