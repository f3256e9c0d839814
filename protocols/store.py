"""Results store: SQLite, one row per measurement, append-only (STYLE habit 5).

WAL mode and a busy timeout let parallel runs (or torchrun ranks, or several protocol
processes) write safely; every write is one transaction.  Everything else (tables,
leaderboard, claims panel) is derived from these rows.  Export to JSON lines and CSV.

Tables
------
``measurements``: run_id, model, protocol, dataset, budget, seed, metric, value,
    extractor ('' when the metric needs none, e.g. BPD), n_samples, config_hash,
    code_version, created (ISO-8601 UTC), extra (JSON text: anything else, e.g. std
    over splits, K of an importance-weighted bound).
``runs``: one row per trained (or evaluated) run: run_id, model, protocol, dataset, budget,
    seed, run_dir (where sample grids / reconstructions / curves live), config (JSON),
    config_hash, code_version, status ('running' | 'done' | 'failed'), created, finished.
``claims``: one row per evaluation of a paper claim: protocol, dataset, budget, extractor,
    claim_id, text, status ('reproduced' | 'not reproduced' | 'inconclusive'),
    evidence (JSON), created.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import math
import os
import sqlite3
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterable, Iterator, List, Optional

SCHEMA = """
CREATE TABLE IF NOT EXISTS measurements (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL, model TEXT NOT NULL, protocol TEXT NOT NULL, dataset TEXT NOT NULL,
    budget TEXT NOT NULL, seed INTEGER NOT NULL, metric TEXT NOT NULL, value REAL NOT NULL,
    extractor TEXT NOT NULL DEFAULT '', n_samples INTEGER NOT NULL DEFAULT 0,
    config_hash TEXT NOT NULL DEFAULT '', code_version TEXT NOT NULL DEFAULT '',
    created TEXT NOT NULL, extra TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS m_cell ON measurements(protocol, dataset, budget, model, seed, metric);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY, model TEXT NOT NULL, protocol TEXT NOT NULL, dataset TEXT NOT NULL,
    budget TEXT NOT NULL, seed INTEGER NOT NULL, run_dir TEXT NOT NULL DEFAULT '',
    config TEXT NOT NULL DEFAULT '{}', config_hash TEXT NOT NULL DEFAULT '',
    code_version TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT 'running',
    created TEXT NOT NULL, finished TEXT
);
CREATE TABLE IF NOT EXISTS claims (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    protocol TEXT NOT NULL, dataset TEXT NOT NULL, budget TEXT NOT NULL, extractor TEXT NOT NULL DEFAULT '',
    claim_id TEXT NOT NULL, text TEXT NOT NULL, status TEXT NOT NULL, evidence TEXT NOT NULL DEFAULT '{}',
    created TEXT NOT NULL
);
"""

MEASUREMENT_COLUMNS = ("run_id", "model", "protocol", "dataset", "budget", "seed", "metric", "value",
                       "extractor", "n_samples", "config_hash", "code_version", "created", "extra")
CLAIM_STATUSES = ("reproduced", "not reproduced", "inconclusive")


def utcnow() -> str:
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


@dataclass
class Measurement:
    run_id: str
    model: str
    protocol: str
    dataset: str
    budget: str
    seed: int
    metric: str
    value: float
    extractor: str = ""
    n_samples: int = 0
    config_hash: str = ""
    code_version: str = ""
    created: str = field(default_factory=utcnow)
    extra: Dict[str, Any] = field(default_factory=dict)

    def row(self) -> tuple:
        d = asdict(self)
        d["extra"] = json.dumps(self.extra, sort_keys=True)
        return tuple(d[c] for c in MEASUREMENT_COLUMNS)


class ResultsStore:
    """Append-only SQLite store; safe for concurrent writers (WAL + busy timeout + retries)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as con:
            con.execute("PRAGMA journal_mode=WAL")
            con.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        try:
            con.execute("PRAGMA busy_timeout=60000")
            con.row_factory = sqlite3.Row
            yield con
        finally:
            con.close()

    def _write(self, sql: str, rows: List[tuple]) -> None:
        for attempt in range(20):
            try:
                with self._connect() as con:
                    con.execute("BEGIN IMMEDIATE")
                    try:
                        con.executemany(sql, rows)
                        con.execute("COMMIT")
                    except BaseException:
                        con.execute("ROLLBACK")
                        raise
                return
            except sqlite3.OperationalError as e:  # "database is locked" beyond busy_timeout
                if "locked" not in str(e) or attempt == 19:
                    raise
                time.sleep(0.05 * (attempt + 1))

    # ---- writes -----------------------------------------------------------------
    def add(self, measurements: Iterable[Measurement]) -> int:
        rows = []
        for m in measurements:
            if not isinstance(m.value, (int, float)) or not math.isfinite(float(m.value)):
                raise ValueError(f"refusing to store non-finite {m.metric}={m.value!r} for {m.model}")
            rows.append(m.row())
        if rows:
            self._write(f"INSERT INTO measurements ({', '.join(MEASUREMENT_COLUMNS)}) "
                        f"VALUES ({', '.join('?' * len(MEASUREMENT_COLUMNS))})", rows)
        return len(rows)

    def start_run(self, run_id: str, *, model: str, protocol: str, dataset: str, budget: str, seed: int,
                  run_dir: str = "", config: Optional[dict] = None, config_hash: str = "",
                  code_version: str = "") -> None:
        self._write("INSERT OR REPLACE INTO runs (run_id, model, protocol, dataset, budget, seed, run_dir, "
                    "config, config_hash, code_version, status, created) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(run_id, model, protocol, dataset, budget, seed, str(run_dir),
                      json.dumps(config or {}, sort_keys=True, default=str), config_hash, code_version,
                      "running", utcnow())])

    def finish_run(self, run_id: str, status: str = "done") -> None:
        self._write("UPDATE runs SET status=?, finished=? WHERE run_id=?", [(status, utcnow(), run_id)])

    def add_claim(self, *, protocol: str, dataset: str, budget: str, claim_id: str, text: str, status: str,
                  evidence: dict, extractor: str = "") -> None:
        if status not in CLAIM_STATUSES:
            raise ValueError(f"claim status must be one of {CLAIM_STATUSES}, not {status!r}")
        self._write("INSERT INTO claims (protocol, dataset, budget, extractor, claim_id, text, status, evidence, "
                    "created) VALUES (?,?,?,?,?,?,?,?,?)",
                    [(protocol, dataset, budget, extractor, claim_id, text, status,
                      json.dumps(evidence, sort_keys=True, default=float), utcnow())])

    # ---- reads ------------------------------------------------------------------
    def query(self, sql: str, params: tuple = ()) -> List[Dict[str, Any]]:
        with self._connect() as con:
            return [dict(r) for r in con.execute(sql, params).fetchall()]

    def measurements(self, **where: Any) -> List[Dict[str, Any]]:
        cols = [c for c in where if c in MEASUREMENT_COLUMNS]
        if len(cols) != len(where):
            raise ValueError(f"unknown measurement column(s): {sorted(set(where) - set(cols))}")
        clause = " AND ".join(f"{c} = ?" for c in cols) or "1"
        rows = self.query(f"SELECT * FROM measurements WHERE {clause} ORDER BY id", tuple(where[c] for c in cols))
        for r in rows:
            r["extra"] = json.loads(r["extra"] or "{}")
        return rows

    def runs(self) -> List[Dict[str, Any]]:
        rows = self.query("SELECT * FROM runs ORDER BY created")
        for r in rows:
            r["config"] = json.loads(r["config"] or "{}")
        return rows

    def claims(self, latest_only: bool = True) -> List[Dict[str, Any]]:
        rows = self.query("SELECT * FROM claims ORDER BY id")
        for r in rows:
            r["evidence"] = json.loads(r["evidence"] or "{}")
        if latest_only:
            last: Dict[tuple, Dict[str, Any]] = {}
            for r in rows:
                last[(r["protocol"], r["dataset"], r["budget"], r["extractor"], r["claim_id"])] = r
            rows = list(last.values())
        return rows

    def has_cell(self, *, protocol: str, dataset: str, budget: str, model: str, seed: int,
                 metrics: Iterable[str]) -> bool:
        """True when every metric of this (protocol, dataset, budget, model, seed) cell is stored."""
        have = {r["metric"] for r in self.query(
            "SELECT DISTINCT metric FROM measurements WHERE protocol=? AND dataset=? AND budget=? AND model=? "
            "AND seed=?", (protocol, dataset, budget, model, seed))}
        return set(metrics) <= have

    # ---- export -----------------------------------------------------------------
    def export_jsonl(self, path: str | os.PathLike) -> int:
        rows = self.measurements()
        with open(path, "w") as f:
            for r in rows:
                f.write(json.dumps(r, sort_keys=True) + "\n")
        return len(rows)

    def export_csv(self, path: str | os.PathLike) -> int:
        rows = self.measurements()
        with open(path, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=["id", *MEASUREMENT_COLUMNS])
            w.writeheader()
            for r in rows:
                w.writerow({**r, "extra": json.dumps(r["extra"], sort_keys=True)})
        return len(rows)
