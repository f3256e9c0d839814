"""The page's tuning studies (``python -m protocols.run --tune N``; protocols/tuning.py), one section per tuning
(the studies of one command, one per model): as Lucic et al. report them ("Are GANs Created Equal?", NeurIPS 2018,
Fig. 3-5): the distribution of the criterion over each model's trials, the expected best score against the number
of trials (bootstrap over trials), every trial on FID x BPD with each model's Pareto front, the selected
configurations with every tuned value, and the claims confirmed at them.

Reads the study tables (common/studies.py) and the claims of the store; a trial that did not complete (pruned,
diverged, failed) counts in the budget and can never be the best (its value is +inf in the bootstrap).
"""
from __future__ import annotations

import math
import random
import textwrap
from collections import defaultdict
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from common.io import atomic_write

from . import gallery

METRIC_LABEL = {"fid": "FID (validation)", "bpd": "BPD (validation)"}
OBJECTIVES = {"fid": ("fid",), "bpd": ("bpd",), "pareto": ("fid", "bpd")}
DRAWS = 1000


def expected_best(values: Sequence[float], draws: int = DRAWS, seed: int = 0) -> List[Tuple[int, float, float, float]]:
    """``(k, median, 5th, 95th percentile)`` of the best (lowest) of ``k`` trials drawn with replacement from
    ``values`` (one per trial; +inf for a trial without a value), for k = 1..len(values) (Lucic et al. Fig. 4)."""
    rng, n, out = random.Random(seed), len(values), []
    for k in range(1, n + 1):
        best = sorted(min(rng.choices(values, k=k)) for _ in range(draws))
        out.append((k, best[draws // 2], best[int(0.05 * (draws - 1))], best[int(0.95 * (draws - 1))]))
    return out


def front(points: List[Tuple[int, float, float]]) -> List[Tuple[int, float, float]]:
    """The points no other beats on both coordinates (lower is better), by the first coordinate."""
    keep = [p for p in points if not any(q[1] <= p[1] and q[2] <= p[2] and (q[1] < p[1] or q[2] < p[2])
                                         for q in points)]
    return sorted(keep, key=lambda p: (p[1], p[2]))


# ---- figures ---------------------------------------------------------------------------------------------------
def _figure(ncols: int):
    from matplotlib.figure import Figure
    fig = Figure(figsize=(4.6 * ncols, 3.8), dpi=110, layout="constrained")
    return fig, list(fig.subplots(1, ncols, squeeze=False)[0])


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png"))


def _color(models: Sequence[str], model: str) -> str:
    """One colour per model across a section's figures."""
    return f"C{sorted(models).index(model) % 10}"


def distribution_png(per_model: Dict[str, List[dict]], metrics: Sequence[str], path: Path, title: str) -> None:
    fig, axes = _figure(len(metrics))
    models = sorted(per_model)
    for ax, metric in zip(axes, metrics):
        data = [[t[metric] for t in per_model[m] if t["state"] == "complete" and t[metric] is not None]
                for m in models]
        shown = [d if d else [float("nan")] for d in data]
        ax.boxplot(shown, showfliers=False, widths=0.5, medianprops={"color": "black"})
        rng = random.Random(0)
        for i, (m, d) in enumerate(zip(models, data), start=1):
            ax.plot([i + rng.uniform(-0.12, 0.12) for _ in d], d, "o", ms=3.5, alpha=0.7, color=_color(models, m))
        ax.set_xticks(range(1, len(models) + 1), [f"{m}\n({len(d)} of {len(per_model[m])})"
                                                  for m, d in zip(models, data)])
        ax.set_ylabel(METRIC_LABEL.get(metric, metric) + ", lower is better")
    fig.suptitle(textwrap.fill(title, 45 * len(fig.axes)), fontsize=9)
    _save(fig, path)


def expected_best_png(per_model: Dict[str, List[dict]], metrics: Sequence[str], path: Path, title: str) -> None:
    fig, axes = _figure(len(metrics))
    for ax, metric in zip(axes, metrics):
        for model in sorted(per_model):
            vals = [t[metric] if t["state"] == "complete" and t[metric] is not None else math.inf
                    for t in per_model[model]]
            curve = [c for c in expected_best(vals) if math.isfinite(c[1])]
            if not curve:
                continue
            ks, top = [c[0] for c in curve], max(v for v in vals if math.isfinite(v))
            line, = ax.plot(ks, [c[1] for c in curve], "-o", ms=3, label=model, color=_color(list(per_model), model))
            ax.fill_between(ks, [c[2] for c in curve], [min(c[3], top) for c in curve], color=line.get_color(),
                            alpha=0.15)
        ax.set_xlabel("trials (budget)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.set_ylabel(f"best {METRIC_LABEL.get(metric, metric)}")
        ax.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 45 * len(fig.axes)), fontsize=9)
    _save(fig, path)


def pareto_png(per_model: Dict[str, List[dict]], selected: Dict[str, int], path: Path, title: str) -> None:
    fig, (ax,) = _figure(1)
    for model in sorted(per_model):
        pts = [(t["number"], t["bpd"], t["fid"]) for t in per_model[model]
               if t["state"] == "complete" and t["fid"] is not None and t["bpd"] is not None]
        if not pts:
            continue
        dots, = ax.plot([p[1] for p in pts], [p[2] for p in pts], "o", ms=4, alpha=0.6, label=model,
                        color=_color(list(per_model), model))
        f = front(pts)
        ax.step([p[1] for p in f], [p[2] for p in f], where="post", color=dots.get_color(), lw=1.2)
        sel = [p for p in pts if p[0] == selected.get(model)]
        if sel:
            ax.plot([sel[0][1]], [sel[0][2]], "o", ms=11, mfc="none", mec=dots.get_color(), mew=1.6)
    ax.set_xlabel("BPD (validation, coverage; lower is better)")
    ax.set_ylabel("FID (validation, quality; lower is better)")
    ax.legend(fontsize=8)
    fig.suptitle(textwrap.fill(title, 45 * len(fig.axes)), fontsize=9)
    _save(fig, path)


# ---- the section ---------------------------------------------------------------------------------------------
def _value_text(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _claims_of(claims: List[dict], study_ids: set) -> List[dict]:
    out = []
    for c in claims:
        ev = c.get("evidence") if isinstance(c.get("evidence"), dict) else {}
        sides = ev.get("tuning") or {}
        if any(isinstance(v, dict) and v.get("study") in study_ids for v in sides.values()):
            out.append({"claim_id": c["claim_id"], "text": c["text"], "status": c["status"],
                        "status_cls": "st-" + c["status"].replace(" ", "-"),
                        "tuning": "; ".join(f"{m}: {'study ' + str(v.get('study')) if v.get('how') == 'study' else 'presets'}"
                                            for m, v in sides.items()),
                        "alike": "tuned alike" if ev.get("tuned_alike") else ev.get("tuning_note", "tuned unequally"),
                        "created": c["created"]})
    return sorted(out, key=lambda c: c["claim_id"])


def sections(studies: List[dict], trials: List[dict], claims: List[dict], out_dir: Path) -> List[dict]:
    """One view per tuning (newest first), its figures written under ``out_dir``."""
    by_tuning: Dict[str, List[dict]] = defaultdict(list)
    for s in studies:
        by_tuning[s["tuning_id"]].append(s)
    by_study: Dict[str, List[dict]] = defaultdict(list)
    for t in trials:
        by_study[t["study_id"]].append(t)
    out = [_section(tid, ss, by_study, claims, out_dir) for tid, ss in by_tuning.items()]
    return sorted(out, key=lambda s: s["updated"], reverse=True)


def _section(tuning_id: str, studies: List[dict], by_study: Dict[str, List[dict]], claims: List[dict],
             out_dir: Path) -> dict:
    first = studies[0]
    per_model = {s["model"]: by_study.get(s["study_id"], []) for s in studies}
    metrics = OBJECTIVES.get(first["criterion"], ("fid",))
    title = (f"{first['dataset']} / {first['protocol']} / {first['budget']}: {first['n_trials']} trials per model, "
             f"{first['sampler']}, criterion {first['criterion']}, pruner {first['pruner']}")
    figs = []
    if any(per_model.values()):
        for kind, draw, caption in (
                ("study-dist", lambda p: distribution_png(per_model, metrics, p, title),
                 "The criterion over each model's complete trials (box: quartiles; under each model: complete trials of "
                 "all trials)."),
                ("study-best", lambda p: expected_best_png(per_model, metrics, p, title),
                 "Expected best score against the number of trials (Lucic et al. 2018, Fig. 4): the median of the best "
                 f"of k trials drawn with replacement, {DRAWS} draws (band: 5th-95th percentile); a trial that did not "
                 "complete counts and is never the best."),
                ("study-pareto", lambda p: pareto_png(per_model, {s["model"]: s["selected"] for s in studies}, p, title),
                 "Every complete trial on validation BPD x FID, each model's Pareto front as a step line, the "
                 "selected trial ringed.")):
            rel = gallery.media_name(kind, tuning_id, first["updated"])
            draw(out_dir / rel)
            figs.append({"src": rel, "alt": f"{kind}: {title}", "caption": caption})
    models = []
    for s in studies:
        ts = per_model[s["model"]]
        counts = defaultdict(int)
        for t in ts:
            counts[t["state"]] += 1
        models.append({
            "model": s["model"], "study_id": s["study_id"], "status": s["status"], "asked": len(ts),
            "counts": ", ".join(f"{n} {k}" for k, n in sorted(counts.items())),
            "selected": f"#{s['selected']}" if s["selected"] >= 0 else "none",
            "selected_hash": s["selected_hash"],
            "tuned": ", ".join(f"{k} {_value_text(v)}" for k, v in (s["selected_params"] or {}).items()),
            "measured": next((", ".join(f"{m} {_value_text(t[m])}" for m in ("fid", "bpd") if t[m] is not None)
                              for t in ts if t["number"] == s["selected"]), ""),
            "front": ", ".join(f"#{n}" for n in s["front"] or []),
            "confirm_seeds": ", ".join(map(str, s["confirm_seeds"] or [])),
            "trials": [{"number": t["number"], "state": t["state"], "fid": _value_text(t["fid"]) if t["fid"] is not None
                        else "", "bpd": _value_text(t["bpd"]) if t["bpd"] is not None else "",
                        "pruned": f"at snapshot {t['decided_at']}, stopped at {t['stopped_at']}"
                        if t["state"] == "pruned" else (t["error"] or ""),
                        "params": ", ".join(f"{k} {_value_text(v)}" for k, v in (t["params"] or {}).items()),
                        "config": t["config_hash"]} for t in ts]})
    space = defaultdict(dict)
    for s in studies:
        for knob, d in (s["space"] or {}).items():
            space[knob][s["model"]] = d["distribution"]
    return {"id": f"study-{tuning_id}", "tuning_id": tuning_id, "title": title, "updated": max(s["updated"] for s in studies),
            "protocol": first["protocol"], "dataset": first["dataset"], "budget": first["budget"],
            "criterion": first["criterion"], "sampler": first["sampler"], "pruner": first["pruner"],
            "seed": first["seed"], "search_seed": first["search_seed"], "n_trials": first["n_trials"],
            "space": [{"knob": k, "models": ", ".join(sorted(v)), "distribution": "; ".join(sorted(set(v.values())))}
                      for k, v in space.items()],
            "models": models, "figures": figs,
            "claims": _claims_of(claims, {s["study_id"] for s in studies})}


def linked_images(views: List[dict]) -> set:
    return {f["src"] for v in views for f in v["figures"]}

