"""Matplotlib figures of the leaderboard: coverage (BPD) vs quality (FID) scatter and PRD curves.

The scatter mirrors the paper's framing (Sec. 3 and 5.1: BPD measures coverage of held-out data,
FID sample quality); the PRD plot mirrors the paper's Fig. 19 (App. E.2; Sajjadi et al. 2018 curves).
Figures are drawn on a bare ``matplotlib.figure.Figure`` (no pyplot state, Agg canvas) and written
atomically (temp file, then rename), since several runs may rebuild the site at once.
"""
from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from matplotlib.figure import Figure

Curve = Tuple[str, Sequence[float], Sequence[float]]      # label, precision, recall


def _safe_label(text: str) -> str:
    """Keep matplotlib's mathtext from interpreting '$' in names."""
    return text.replace("$", r"\$")


def _save(fig: Figure, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fig.savefig(tmp, format="png")
    os.replace(tmp, path)


def scatter_png(points: List[Tuple[str, float, Optional[float], float, Optional[float]]], path: Path,
                title: str, xlabel: str = "BPD (coverage, lower is better)",
                ylabel: str = "FID (quality, lower is better)") -> None:
    """points: (label, x mean, x std or None, y mean, y std or None); error bars show the std over seeds."""
    fig = Figure(figsize=(5.2, 4.0), dpi=110, layout="constrained")
    ax = fig.subplots()
    for label, x, xs, y, ys in points:
        ax.errorbar([x], [y], xerr=None if xs is None else [xs], yerr=None if ys is None else [ys],
                    fmt="o", capsize=3, markersize=5)
        ax.annotate(_safe_label(label), (x, y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_safe_label(title), fontsize=9)
    ax.grid(alpha=0.3)
    _save(fig, path)


def prd_png(curves: List[Curve], path: Path, title: str) -> None:
    """One precision-recall curve per model (recall on x, precision on y, as in the paper's Fig. 19)."""
    fig = Figure(figsize=(5.2, 4.0), dpi=110, layout="constrained")
    ax = fig.subplots()
    for label, precision, recall in curves:
        ax.plot(recall, precision, label=_safe_label(label), linewidth=1.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title(_safe_label(title), fontsize=9)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8, loc="lower left")
    _save(fig, path)


def load_prd_curve(path: Path) -> Tuple[List[float], List[float]]:
    """Read ``{"precision": [...], "recall": [...]}``; raise a one-line ValueError when malformed."""
    try:
        data = json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); rewrite it or delete it") from None
    if not isinstance(data, dict) or not {"precision", "recall"} <= set(data):
        raise ValueError(f"{path}: expected an object with 'precision' and 'recall' lists; rewrite or delete it")
    prec, rec = data["precision"], data["recall"]
    ok = isinstance(prec, list) and isinstance(rec, list) and len(prec) == len(rec) and len(prec) > 0
    if not ok or not all(isinstance(v, (int, float)) and math.isfinite(v) for v in prec + rec):
        raise ValueError(f"{path}: 'precision' and 'recall' must be equal-length non-empty lists of finite "
                         "numbers; rewrite or delete it")
    return [float(v) for v in prec], [float(v) for v in rec]
