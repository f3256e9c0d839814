"""Tuning studies in the results store: two tables beside the measurements, written by the driver alone.

A study (``python -m protocols.run --tune N``) searches one model's space with an Optuna sampler; its trials are
cells of the ``tune`` protocol (measured on the validation split, stored in ``measurements`` like any cell).  These
tables tag them with their study and trial number and keep what the page needs without Optuna: the space, the
criterion, each trial's state and values, the selected trial.  Optuna's own storage (a journal file beside the
store) holds the sampler's history; both are written by the driver only.  Torch-free: the leaderboard reads them.

Tables
------
``studies``: study_id (primary key), tuning_id (the studies of one command: one per model), protocol, dataset,
    budget, model, criterion (fid | bpd | pareto), sampler, pruner, seed (the sampler's), search_seed (the training
    seed of every trial), n_trials (the budget asked for), space (JSON: knob -> distribution), base_hash (the
    model's configuration before the trial's values), selected (trial number, -1 until selected), selected_params
    (JSON), selected_hash (its config hash), front (JSON: trial numbers of the Pareto front on FID x BPD),
    confirm_seeds (JSON), status (searching | selected | confirmed), created, updated.
``study_trials``: (study_id, number) primary key, model, state (running | complete | pruned | diverged | failed),
    params (JSON), fid, bpd (validation values; NULL when not measured), value (the criterion, NULL unless
    complete), config_hash, cell_key, run_id, snapshots (how many were judged), decided_at / stopped_at (the
    snapshot a pruning decision was taken at / the one the trial stopped at), error, created, finished.
"""
from __future__ import annotations

import json
import math
from typing import Any, Dict, List, Optional

from .store import ResultsStore, utcnow

SCHEMA = (
    """CREATE TABLE IF NOT EXISTS studies (
    study_id TEXT PRIMARY KEY, tuning_id TEXT NOT NULL, protocol TEXT NOT NULL, dataset TEXT NOT NULL,
    budget TEXT NOT NULL, model TEXT NOT NULL, criterion TEXT NOT NULL, sampler TEXT NOT NULL, pruner TEXT NOT NULL,
    seed INTEGER NOT NULL, search_seed INTEGER NOT NULL, n_trials INTEGER NOT NULL, space TEXT NOT NULL DEFAULT '{}',
    base_hash TEXT NOT NULL DEFAULT '', selected INTEGER NOT NULL DEFAULT -1, selected_params TEXT NOT NULL DEFAULT
    '{}', selected_hash TEXT NOT NULL DEFAULT '', front TEXT NOT NULL DEFAULT '[]', confirm_seeds TEXT NOT NULL
    DEFAULT '[]', status TEXT NOT NULL DEFAULT 'searching', created TEXT NOT NULL, updated TEXT NOT NULL)""",
    """CREATE TABLE IF NOT EXISTS study_trials (
    study_id TEXT NOT NULL, number INTEGER NOT NULL, model TEXT NOT NULL, state TEXT NOT NULL,
    params TEXT NOT NULL DEFAULT '{}', fid REAL, bpd REAL, value REAL, config_hash TEXT NOT NULL DEFAULT '',
    cell_key TEXT NOT NULL DEFAULT '', run_id TEXT NOT NULL DEFAULT '', snapshots INTEGER NOT NULL DEFAULT 0,
    decided_at INTEGER, stopped_at INTEGER, error TEXT NOT NULL DEFAULT '', created TEXT NOT NULL, finished TEXT,
    PRIMARY KEY (study_id, number))""",
)
#: the protocol of every trial cell (registered by protocols/trials.py); the page shows its rows only with their study
TRIAL_PROTOCOL = "tune"
TRIAL_STATES = ("running", "complete", "pruned", "diverged", "failed")
STUDY_COLUMNS = ("study_id", "tuning_id", "protocol", "dataset", "budget", "model", "criterion", "sampler", "pruner",
                 "seed", "search_seed", "n_trials", "space", "base_hash", "created", "updated")
JSON_FIELDS = ("space", "selected_params", "front", "confirm_seeds", "params")


def _finite(v: Optional[float]) -> Optional[float]:
    return float(v) if v is not None and math.isfinite(float(v)) else None


class StudyRecords:
    """The study tables of one results store (created on first use; the driver is their only writer)."""

    def __init__(self, store: ResultsStore):
        self.store = store
        if not store.readonly:
            store._transaction([(sql, [()]) for sql in SCHEMA])

    def put_study(self, **row: Any) -> None:
        """Record a study (again: its budget and the time are updated, its selection kept)."""
        row = {**row, "space": json.dumps(row["space"], sort_keys=True), "created": utcnow(), "updated": utcnow()}
        cols = ", ".join(STUDY_COLUMNS)
        self.store._transaction([(f"INSERT INTO studies ({cols}) VALUES ({', '.join('?' * len(STUDY_COLUMNS))}) "
                                  f"ON CONFLICT(study_id) DO UPDATE SET n_trials=excluded.n_trials, "
                                  f"updated=excluded.updated", [tuple(row[c] for c in STUDY_COLUMNS)])])

    def select(self, study_id: str, number: int, params: Dict[str, Any], config_hash: str, front: List[int]) -> None:
        self.store._transaction([("UPDATE studies SET selected=?, selected_params=?, selected_hash=?, front=?, "
                                  "status='selected', updated=? WHERE study_id=?",
                                  [(number, json.dumps(params, sort_keys=True), config_hash, json.dumps(front),
                                    utcnow(), study_id)])])

    def confirmed(self, study_id: str, seeds: List[int]) -> None:
        self.store._transaction([("UPDATE studies SET status='confirmed', confirm_seeds=?, updated=? WHERE "
                                  "study_id=?", [(json.dumps(seeds), utcnow(), study_id)])])

    def put_trial(self, study_id: str, number: int, *, model: str, state: str, params: Dict[str, Any],
                  config_hash: str = "", cell_key: str = "", run_id: str = "", fid: Optional[float] = None,
                  bpd: Optional[float] = None, value: Optional[float] = None, snapshots: int = 0,
                  decided_at: Optional[int] = None, stopped_at: Optional[int] = None, error: str = "") -> None:
        if state not in TRIAL_STATES:
            raise ValueError(f"trial state must be one of {TRIAL_STATES}, not {state!r}")
        finished = None if state == "running" else utcnow()
        self.store._transaction([(
            "INSERT INTO study_trials (study_id, number, model, state, params, fid, bpd, value, config_hash, cell_key, "
            "run_id, snapshots, decided_at, stopped_at, error, created, finished) VALUES "
            "(?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?) ON CONFLICT(study_id, number) DO UPDATE SET state=excluded.state, "
            "fid=excluded.fid, bpd=excluded.bpd, value=excluded.value, snapshots=excluded.snapshots, "
            "decided_at=excluded.decided_at, stopped_at=excluded.stopped_at, error=excluded.error, "
            "finished=excluded.finished",
            [(study_id, number, model, state, json.dumps(params, sort_keys=True), _finite(fid), _finite(bpd),
              _finite(value), config_hash, cell_key, run_id, snapshots, decided_at, stopped_at, error, utcnow(),
              finished)])])

    # ---- reads (a read-only store too; a store without studies has none) ---------------------------------------
    def _rows(self, sql: str, params: tuple = ()) -> List[Dict[str, Any]]:
        have = {r["name"] for r in self.store.query("SELECT name FROM sqlite_master WHERE type='table'")}
        if not {"studies", "study_trials"} <= have:
            return []
        rows = self.store.query(sql, params)
        for r in rows:
            for k in JSON_FIELDS:
                if k in r:
                    r[k] = json.loads(r[k] or "null")
        return rows

    def studies(self, **where: Any) -> List[Dict[str, Any]]:
        clause = " AND ".join(f"{k}=?" for k in where) or "1"
        return self._rows(f"SELECT * FROM studies WHERE {clause} ORDER BY created, study_id", tuple(where.values()))

    def trials(self, study_id: Optional[str] = None) -> List[Dict[str, Any]]:
        if study_id is None:
            return self._rows("SELECT * FROM study_trials ORDER BY study_id, number")
        return self._rows("SELECT * FROM study_trials WHERE study_id=? ORDER BY number", (study_id,))
