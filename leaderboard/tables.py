"""Aggregate store measurements over seeds and group them into comparable tables (DESIGN "Leaderboard").

A cell is one (protocol, dataset, budget, model, metric, extractor, n_samples) aggregated over seeds:
mean, sample std (ddof=1; None for one seed), the seeds, run ids, config hashes, code versions and the
newest date.  When a seed was measured more than once (a rerun appends rows), its newest value counts.

A table holds one dataset, one feature extractor, one budget and one sample count, so its
extractor-dependent columns are never compared across any of these.  Extractor-independent metrics
(extractor '', e.g. BPD) of the same dataset, budget, protocol and model are shown alongside, in
columns keyed by (metric, n_samples); rows with only such metrics get a table of their own.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from metrics import keys

BUDGET_ORDER = ("paper", "cpu", "smoke")
METRIC_ORDER = (keys.BPD, keys.BPD_IW, keys.IS, keys.IS_STD, keys.FID, keys.KID, keys.PRD_AUC, keys.PRD_F8,
                keys.PRD_F1_8, keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE, keys.GAN_TEST,
                keys.GAN_TRAIN, keys.REAL_BASELINE)
CELL_FIELDS = ("protocol", "dataset", "budget", "model", "metric", "extractor", "n_samples")


@dataclass
class Cell:
    protocol: str
    dataset: str
    budget: str
    model: str
    metric: str
    extractor: str
    n_samples: int
    values: List[float]
    seeds: List[int]
    run_ids: List[str]
    config_hashes: List[str]
    code_versions: List[str]
    newest: str

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> Optional[float]:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


def _uniq(items: Iterable[str]) -> List[str]:
    return sorted({i for i in items if i})


def aggregate(rows: Iterable[dict]) -> List[Cell]:
    """Store rows (ordered by id) -> one Cell per key; the newest row of each seed wins."""
    per_seed: Dict[tuple, Dict[int, dict]] = defaultdict(dict)
    for r in rows:
        per_seed[tuple(r[f] for f in CELL_FIELDS)][int(r["seed"])] = r
    cells = []
    for key, by_seed in per_seed.items():
        rs = [by_seed[s] for s in sorted(by_seed)]
        cells.append(Cell(*key, values=[float(r["value"]) for r in rs], seeds=sorted(by_seed),
                          run_ids=_uniq(r["run_id"] for r in rs),
                          config_hashes=_uniq(r["config_hash"] for r in rs),
                          code_versions=_uniq(r["code_version"] for r in rs),
                          newest=max(r["created"] for r in rs)))
    return cells


@dataclass(frozen=True)
class Column:
    metric: str
    extractor: str
    n_samples: int

    @property
    def direction(self) -> str:
        return keys.DIRECTION.get(self.metric, "")


@dataclass
class Row:
    protocol: str
    model: str
    cells: Dict[Column, Cell] = field(default_factory=dict)

    @property
    def seeds(self) -> List[int]:
        return sorted({s for c in self.cells.values() for s in c.seeds})

    def provenance(self) -> Dict[str, List[str] | str]:
        cs = list(self.cells.values())
        return {"run_ids": _uniq(r for c in cs for r in c.run_ids),
                "config_hashes": _uniq(h for c in cs for h in c.config_hashes),
                "code_versions": _uniq(v for c in cs for v in c.code_versions),
                "newest": max(c.newest for c in cs)}


@dataclass
class Table:
    dataset: str
    extractor: str      # '' for a table of extractor-independent metrics only
    budget: str
    n_samples: int      # sample count of the extractor-dependent columns (0 for '' tables)
    columns: List[Column]
    rows: List[Row]

    @property
    def key(self) -> Tuple[str, str, str, int]:
        return (self.dataset, self.extractor, self.budget, self.n_samples)


def metric_rank(metric: str) -> Tuple[int, str]:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def _column_order(col: Column) -> tuple:
    return (col.extractor != "", metric_rank(col.metric), -col.n_samples)


def _budget_rank(budget: str) -> Tuple[int, str]:
    return (BUDGET_ORDER.index(budget) if budget in BUDGET_ORDER else len(BUDGET_ORDER), budget)


def _make_table(key: tuple, cells: List[Cell]) -> Table:
    rows: Dict[Tuple[str, str], Row] = {}
    for c in cells:
        row = rows.setdefault((c.protocol, c.model), Row(c.protocol, c.model))
        row.cells[Column(c.metric, c.extractor, c.n_samples)] = c
    columns = sorted({col for r in rows.values() for col in r.cells}, key=_column_order)
    ordered = [rows[k] for k in sorted(rows)]
    return Table(*key, columns=columns, rows=ordered)


def group_tables(cells: List[Cell]) -> List[Table]:
    """Cells -> tables keyed by (dataset, extractor, budget, n_samples); see the module docstring."""
    dep: Dict[tuple, List[Cell]] = defaultdict(list)
    free: Dict[tuple, List[Cell]] = defaultdict(list)   # (dataset, budget, protocol, model) -> cells
    for c in cells:
        if c.extractor:
            dep[(c.dataset, c.extractor, c.budget, c.n_samples)].append(c)
        else:
            free[(c.dataset, c.budget, c.protocol, c.model)].append(c)
    used = set()
    tables = []
    for key, dcells in dep.items():
        members = {(key[0], key[2], c.protocol, c.model) for c in dcells}
        extra = [c for m in members for c in free.get(m, [])]
        used |= members
        tables.append(_make_table(key, dcells + extra))
    alone: Dict[tuple, List[Cell]] = defaultdict(list)
    for m, fcells in free.items():
        if m not in used:
            alone[(m[0], "", m[1], 0)].extend(fcells)
    tables += [_make_table(key, fcells) for key, fcells in alone.items()]
    return sorted(tables, key=lambda t: (t.dataset, t.extractor == "", t.extractor, _budget_rank(t.budget),
                                         -t.n_samples))
