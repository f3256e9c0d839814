"""Matplotlib figures of the leaderboard: coverage (BPD) vs quality (FID) scatter and PRD curves.

The scatter mirrors the paper's framing (Sec. 3 and 5.1: BPD measures coverage of held-out data,
FID sample quality) and adds sampling cost as marker size (``speed_vs_gan`` or ``nfe`` when measured);
the PRD plot mirrors the paper's Fig. 19 (App. E.2; Sajjadi et al. 2018 curves).
Figures are drawn on a bare ``matplotlib.figure.Figure`` (no pyplot state, Agg canvas) and written with
``common.io.atomic_write``.  matplotlib is imported on first use, so ``--help`` stays fast.
"""
from __future__ import annotations

import json
import math
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import List, Optional, Sequence, Tuple

from common.io import atomic_write

Curve = Tuple[str, Sequence[float], Sequence[float]]      # label, precision, recall
DEFAULT_MARKER = 5.0                                       # marker size (points) of a point without a cost
COST_TICKS = (1, 10, 100, 1000, 10000)


@dataclass
class Point:
    label: str
    x: float
    x_std: Optional[float]
    y: float
    y_std: Optional[float]
    cost: Optional[float] = None      # sampling cost in the unit of the figure's cost legend (None: not measured)


def _figure():
    from matplotlib.figure import Figure
    fig = Figure(figsize=(5.2, 4.0), dpi=110, layout="constrained")
    return fig, fig.subplots()


def _safe_label(text: str) -> str:
    """Keep matplotlib's mathtext from interpreting '$' in names."""
    return text.replace("$", r"\$")


def _save(fig, path: Path) -> None:
    atomic_write(path, lambda f: fig.savefig(f, format="png"))


def marker_size(cost: Optional[float]) -> float:
    """Marker diameter (points): the default for no cost; grows with log2 of the cost (1 = default size)."""
    if cost is None or not math.isfinite(cost) or cost <= 0:
        return DEFAULT_MARKER
    return min(26.0, max(2.5, DEFAULT_MARKER + 3.0 * math.log2(cost)))


def scatter_png(points: List[Point], path: Path, title: str, cost_label: str = "",
                xlabel: str = "BPD (coverage, lower is better)",
                ylabel: str = "FID (quality, lower is better)") -> None:
    """One point per configuration; error bars show the std over seeds; marker size shows ``cost`` when
    ``cost_label`` names it (hollow markers: no cost measured)."""
    from matplotlib.lines import Line2D
    fig, ax = _figure()
    for p in points:
        hollow = bool(cost_label) and p.cost is None
        ax.errorbar([p.x], [p.y], xerr=None if p.x_std is None else [p.x_std],
                    yerr=None if p.y_std is None else [p.y_std], fmt="o", capsize=3,
                    markersize=marker_size(p.cost if cost_label else None),
                    markerfacecolor="none" if hollow else None, alpha=0.85)
        ax.annotate(_safe_label(p.label), (p.x, p.y), textcoords="offset points", xytext=(5, 4), fontsize=8)
    if cost_label:
        costs = [p.cost for p in points if p.cost is not None]
        lo, hi = (min(costs), max(costs)) if costs else (1.0, 1.0)
        ticks = [t for t in COST_TICKS if lo / 3 <= t <= hi * 3] or [COST_TICKS[0]]
        if len(ticks) == 1:      # always show how size grows
            ticks.append(next((t for t in COST_TICKS if t > ticks[0]), ticks[0] * 10))
        handles = [Line2D([], [], ls="", marker="o", color="0.45", markersize=marker_size(t), label=f"{t:g}")
                   for t in ticks]
        if any(p.cost is None for p in points):
            handles.append(Line2D([], [], ls="", marker="o", color="0.45", markerfacecolor="none",
                                  markersize=DEFAULT_MARKER, label="not measured"))
        ax.legend(handles=handles, title=cost_label, fontsize=7, title_fontsize=7, loc="best", labelspacing=1.1,
                  borderpad=0.8)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title(_safe_label(title), fontsize=9)
    ax.grid(alpha=0.3)
    _save(fig, path)


def prd_png(curves: List[Curve], path: Path, title: str) -> None:
    """One precision-recall curve per configuration (recall on x, precision on y, as in the paper's Fig. 19)."""
    fig, ax = _figure()
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


def steps_png(curves: List[Tuple[str, List[int], List[float], List[Optional[float]]]], path: Path, title: str) -> None:
    """Sample quality against sampling cost for step-based samplers: FID (mean +- std over seeds) against the
    number of network evaluations per sample, one line per configuration."""
    fig, ax = _figure()
    for label, steps, means, stds in curves:
        ax.errorbar(steps, means, yerr=[s or 0.0 for s in stds], marker="o", capsize=3, label=_safe_label(label))
    ax.set_xscale("log")
    ax.set_xlabel("sampling steps (network evaluations per sample)")
    ax.set_ylabel("FID")
    ax.set_title(_safe_label(title), fontsize=9)
    ax.grid(alpha=0.3)
    if curves:
        ax.legend(fontsize=8)
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


#: the learning curves' rows, in this order, where any series has values
CURVE_ROWS = (("fid", "FID"), ("bpd", "BPD (held-out subset)"), ("recall", "recall (prdc)"),
              ("class_kl", "class KL (samples || real)"))


def curves_png(series, path: Path, title: str) -> None:
    """Learning curves: ``series`` = [(label, {metric: [(images, seconds, [values over seeds])]})]; a grid of FID,
    BPD, recall and class coverage (the rows some series has) against training images seen and against training
    seconds (mean line, range band)."""
    from matplotlib.figure import Figure
    from matplotlib.ticker import FuncFormatter
    rows = [r for r in CURVE_ROWS if any(curves.get(r[0]) for _, curves in series)] or list(CURVE_ROWS[:2])
    fig = Figure(figsize=(9.0, 3.2 * len(rows)), dpi=100, layout="constrained")
    axes = fig.subplots(len(rows), 2, squeeze=False)
    for row, (metric, name) in enumerate(rows):
        for col, (xi, xlabel) in enumerate(((0, "training images seen (thousands)"),
                                             (1, "seconds of training steps"))):
            ax = axes[row][col]
            if xi == 0:       # 25600, 51200, ... run into each other as plain tick labels
                ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v / 1000:g}"))
            for k, (label, curves) in enumerate(series):
                pts = curves.get(metric)
                if not pts:
                    continue
                xs = [p[xi] for p in pts]
                means = [sum(p[2]) / len(p[2]) for p in pts]
                color = f"C{k % 10}"
                ax.plot(xs, means, marker="o", ms=3, color=color, label=_safe_label(label))
                ax.fill_between(xs, [min(p[2]) for p in pts], [max(p[2]) for p in pts], color=color, alpha=0.15)
            ax.set_xlabel(xlabel)
            ax.set_ylabel(name)
            ax.grid(alpha=0.3)
    handles = {}
    for ax in (a for row in axes for a in row):       # one legend for the figure, below the panels
        for h, lab in zip(*ax.get_legend_handles_labels()):
            handles.setdefault(lab, h)
    if handles:
        fig.legend(list(handles.values()), list(handles), loc="outside lower center", fontsize=7,
                   ncol=1 if max(map(len, handles)) > 50 else 2)
    fig.suptitle(_safe_label(title), fontsize=9)
    _save(fig, path)


def class_shares_png(panels, class_names: List[str], path: Path, title: str) -> None:
    """Class shares along training: ``panels`` = [(label, [(images, [mean share per class])], [real share per
    class])], one panel per configuration, the shares stacked (bottom to top in class order) against training
    images seen, the real shares as ticks on the right edge."""
    from matplotlib.figure import Figure
    cols = min(3, max(1, len(panels)))
    nrows = (len(panels) + cols - 1) // cols
    fig = Figure(figsize=(3.6 * cols + 1.6, 2.8 * nrows), dpi=100, layout="constrained")
    axes = fig.subplots(nrows, cols, squeeze=False)
    for k, ax in enumerate(ax for row in axes for ax in row):
        if k >= len(panels):
            ax.set_axis_off()
            continue
        label, points, real = panels[k]
        xs = [p[0] / 1000 for p in points]
        stacks = [[p[1][c] for p in points] for c in range(len(class_names))]
        ax.stackplot(xs, stacks, labels=[_safe_label(n) for n in class_names],
                     colors=[f"C{c % 10}" for c in range(len(class_names))], alpha=0.85)
        edge = 0.0
        for c, share in enumerate(real):
            edge += share
            ax.axhline(edge, xmin=0.97, xmax=1.0, color="black", lw=1.0)
        ax.set_ylim(0, 1)
        ax.set_title("\n".join(textwrap.wrap(_safe_label(label), 48)), fontsize=7)
        ax.set_xlabel("training images seen (thousands)", fontsize=8)
        ax.set_ylabel("share of samples", fontsize=8)
    handles, names = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, names, loc="outside right center", fontsize=7)
    fig.suptitle(_safe_label(title), fontsize=9)
    _save(fig, path)
