"""Aggregate store measurements over seeds, per configuration, and group them into comparable tables
(docs/design.md "Results store and page").

A *group* is one configuration of one protocol and model: the store's ``group_key`` (protocol, dataset
content, model, resolved config hash, extractor identity; everything but the seed).  Rows written before
the store had identities have an empty ``group_key``; their group is (protocol, dataset, budget, model,
config hash), so old stores still render.  Two groups are never pooled.

A cell is one (group, metric, extractor, extractor identity, n_samples) aggregated over the group's seeds:
mean, sample std (ddof=1; None for one seed), the seeds, run ids, config hashes, code versions, the newest
date, the checkpoint each seed evaluated and the extractor's recorded held-out accuracy.  When a seed was
measured more than once (a rerun appends rows), its newest value counts.

A table holds one dataset, one feature extractor and one extractor identity, one budget and one sample
count, so its extractor-dependent columns are never compared across any of these.  Extractor-independent
metrics (extractor '', e.g. BPD, sampling speed) of the same group are shown alongside; groups with only
such metrics get a table of their own.  One table row is one group.
"""
from __future__ import annotations

import statistics
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from metrics import keys

BUDGET_ORDER = ("paper", "cpu", "smoke")
METRIC_ORDER = (keys.BPD, keys.BPD_CONTENT, keys.BPD_IW, keys.IS, keys.IS_STD, keys.FID, keys.KID, keys.PRD_AUC,
                keys.PRD_F8,
                keys.PRD_F1_8, keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE, keys.VENDI, keys.MMD,
                keys.CMMD, keys.AUTHPCT, keys.FLD_GAP, keys.C_T, keys.FLD, keys.BPD_GAP, keys.GAN_TEST,
                keys.GAN_TRAIN, keys.REAL_BASELINE, keys.NFE, keys.SPEED_VS_GAN, keys.SAMPLES_PER_S)
CELL_FIELDS = ("group", "metric", "extractor", "extractor_id", "n_samples")
LEGACY = "legacy"


def group_of(row: dict) -> str:
    """The configuration a measurement or run belongs to (see the module docstring)."""
    if row.get("group_key"):
        return row["group_key"]
    parts = (LEGACY, row["protocol"], row["dataset"], row["budget"], row["model"], row.get("config_hash") or "")
    return "\x1f".join(str(p) for p in parts)


def is_legacy(group: str) -> bool:
    return group.startswith(LEGACY + "\x1f")


@dataclass
class Cell:
    protocol: str
    dataset: str
    budget: str
    model: str
    group: str
    metric: str
    extractor: str
    extractor_id: str
    n_samples: int
    values: List[float]
    seeds: List[int]
    run_ids: List[str]
    config_hashes: List[str]
    code_versions: List[str]
    newest: str
    checkpoints: Dict[int, str] = field(default_factory=dict)   # seed -> checkpoint label ('' unknown)
    accuracies: List[float] = field(default_factory=list)      # extractor held-out accuracy (%), as recorded

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> Optional[float]:
        return statistics.stdev(self.values) if len(self.values) > 1 else None


def _uniq(items: Iterable[str]) -> List[str]:
    return sorted({i for i in items if i})


def _checkpoint(row: dict) -> str:
    extra = row.get("extra") or {}
    return str(extra.get("checkpoint") or row.get("checkpoint") or "")


def aggregate(rows: Iterable[dict]) -> List[Cell]:
    """Store rows (ordered by id) -> one Cell per (group, metric, extractor, extractor id, n); the newest row
    of each seed wins."""
    per_seed: Dict[tuple, Dict[int, dict]] = defaultdict(dict)
    for r in rows:
        g = group_of(r)
        per_seed[(g, r["metric"], r["extractor"], r.get("extractor_id") or "", int(r["n_samples"]))][
            int(r["seed"])] = r
    cells = []
    for key, by_seed in per_seed.items():
        seeds = sorted(by_seed)
        rs = [by_seed[s] for s in seeds]
        first = rs[0]
        accs = sorted({float(r["extra"]["extractor_accuracy"]) for r in rs
                       if isinstance(r.get("extra"), dict) and r["extra"].get("extractor_accuracy") is not None})
        cells.append(Cell(first["protocol"], first["dataset"], first["budget"], first["model"], *key,
                          values=[float(r["value"]) for r in rs], seeds=seeds,
                          run_ids=_uniq(r["run_id"] for r in rs),
                          config_hashes=_uniq(r["config_hash"] for r in rs),
                          code_versions=_uniq(r["code_version"] for r in rs),
                          newest=max(r["created"] for r in rs),
                          checkpoints={s: _checkpoint(by_seed[s]) for s in seeds}, accuracies=accs))
    return cells


@dataclass(frozen=True)
class Column:
    metric: str
    extractor: str
    n_samples: int

    @property
    def direction(self) -> str:
        return keys.direction(self.metric)


@dataclass
class Row:
    protocol: str
    model: str
    group: str
    cells: Dict[Column, Cell] = field(default_factory=dict)
    label: str = ""          # the config keys this group differs in from the table's other groups of its model
    label_title: str = ""    # every differing key, for the tooltip

    @property
    def seeds(self) -> List[int]:
        return sorted({s for c in self.cells.values() for s in c.seeds})

    @property
    def checkpoints(self) -> Dict[int, str]:
        """seed -> checkpoint label (from the newest row of each seed over the row's cells)."""
        out: Dict[int, Tuple[str, str]] = {}
        for c in self.cells.values():
            for s, label in c.checkpoints.items():
                if label and (s not in out or c.newest > out[s][0]):
                    out[s] = (c.newest, label)
        return {s: v[1] for s, v in sorted(out.items())}

    def provenance(self) -> Dict[str, object]:
        cs = list(self.cells.values())
        return {"run_ids": _uniq(r for c in cs for r in c.run_ids),
                "config_hashes": _uniq(h for c in cs for h in c.config_hashes),
                "code_versions": _uniq(v for c in cs for v in c.code_versions),
                "extractor_ids": _uniq(c.extractor_id for c in cs),
                "newest": max(c.newest for c in cs), "group": self.group}


@dataclass
class Table:
    dataset: str
    extractor: str      # '' for a table of extractor-independent metrics only
    extractor_id: str   # content identity of the extractor ('' for legacy rows and '' tables)
    budget: str
    n_samples: int      # sample count of the extractor-dependent columns (0 for '' tables)
    columns: List[Column]
    rows: List[Row]

    @property
    def key(self) -> Tuple[str, str, str, str, int]:
        return (self.dataset, self.extractor, self.extractor_id, self.budget, self.n_samples)

    @property
    def accuracies(self) -> List[float]:
        """Held-out accuracies of the table's extractor as recorded with its extractor-dependent cells."""
        return sorted({a for r in self.rows for c in r.cells.values() if c.extractor for a in c.accuracies})


def metric_rank(metric: str) -> Tuple[int, str]:
    return (METRIC_ORDER.index(metric) if metric in METRIC_ORDER else len(METRIC_ORDER), metric)


def _column_order(col: Column) -> tuple:
    return (col.extractor != "", metric_rank(col.metric), -col.n_samples)


def _budget_rank(budget: str) -> Tuple[int, str]:
    return (BUDGET_ORDER.index(budget) if budget in BUDGET_ORDER else len(BUDGET_ORDER), budget)


def _make_table(key: tuple, cells: List[Cell]) -> Table:
    rows: Dict[str, Row] = {}
    for c in cells:
        row = rows.setdefault(c.group, Row(c.protocol, c.model, c.group))
        row.cells[Column(c.metric, c.extractor, c.n_samples)] = c
    columns = sorted({col for r in rows.values() for col in r.cells}, key=_column_order)
    ordered = sorted(rows.values(), key=lambda r: (r.protocol, r.model == "real", r.model, r.group))  # floor last
    return Table(*key, columns=columns, rows=ordered)


def group_tables(cells: List[Cell]) -> List[Table]:
    """Cells -> tables keyed by (dataset, extractor, extractor id, budget, n_samples); see the module docstring."""
    dep: Dict[tuple, List[Cell]] = defaultdict(list)
    free: Dict[str, List[Cell]] = defaultdict(list)   # group -> its extractor-independent cells
    for c in cells:
        if c.extractor:
            dep[(c.dataset, c.extractor, c.extractor_id, c.budget, c.n_samples)].append(c)
        else:
            free[c.group].append(c)
    used = set()
    tables = []
    for key, dcells in dep.items():
        members = {c.group for c in dcells}
        used |= members
        tables.append(_make_table(key, dcells + [c for g in sorted(members) for c in free.get(g, [])]))
    alone: Dict[tuple, List[Cell]] = defaultdict(list)
    for g, fcells in free.items():
        if g not in used:
            alone[(fcells[0].dataset, "", "", fcells[0].budget, 0)].extend(fcells)
    tables += [_make_table(key, fcells) for key, fcells in alone.items()]
    return sorted(tables, key=lambda t: (t.dataset, t.extractor == "", t.extractor, t.extractor_id,
                                         _budget_rank(t.budget), -t.n_samples))
