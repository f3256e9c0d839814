"""Results store: SQLite, one row per measurement, append-only (STYLE habit 5).

WAL mode and a busy timeout let parallel runs (or torchrun ranks, or several protocol processes) write
safely; every write is one transaction.  SQLite answers "database is locked" at once, without waiting out the
busy timeout, in a few cases (two processes switching a new store to WAL at the same moment, a lock upgrade
that would deadlock), so every operation (opening, migrating, writing, reading) retries those with backoff for up
to ``LOCK_WAIT_S`` seconds.  Everything else (tables, leaderboard, claims panel) is derived
from these rows.  Export to JSON lines and CSV.  Torch-free: the leaderboard reads it without torch.

Identity.  A measurement belongs to a *cell*: (protocol, dataset and its content, model, resolved config
hash, extractor identity, seed), hashed into ``cell_key``; the same without the seed is its ``group_key``
(the seeds of one configuration).  Sample counts are part of the config, so of both keys.  A protocol skips
a cell only when its ``cell_key`` is complete in the store; tables and claims aggregate seeds by
``group_key`` and never pool two configurations.  A cell's rows are its latest evaluation: committing a cell
replaces the rows stored under its ``cell_key`` (``--fresh`` re-measures, it never doubles).

Tables
------
``measurements``: run_id, model, protocol, dataset, budget, seed, metric, value, extractor ('' when the
    metric needs none, e.g. BPD), n_samples, config_hash, code_version, created (ISO-8601 UTC), extra (JSON:
    anything else, e.g. std over splits, K of an importance-weighted bound), cell_key, group_key,
    extractor_id (content identity of the feature extractor: weights hash or domain-net key), snapshot (0: the
    cell's final evaluation; i >= 1: its i-th snapshot along training, cheap metrics only), at_step, images_seen
    and train_seconds (where along training the value was measured: optimisation step, training images seen by
    all processes, seconds spent in training steps, evaluations excluded; -1 where unknown).  A snapshot row
    belongs to the same cell and group as the final rows (the schedule is part of the config hash); tables,
    claims and the completeness check read final rows only, curves read the snapshot rows.
``runs``: one row per trained (or evaluated) run: run_id, model, protocol, dataset, budget, seed, run_dir
    (sample grids / reconstructions / curves), config (JSON), config_hash, code_version, status ('running' |
    'done' | 'failed' | 'interrupted': its driver stopped first), created, finished, cell_key, group_key,
    checkpoint (which checkpoint was evaluated).
``claims``: one row per evaluation of a paper claim: protocol, dataset, budget, extractor, claim_id, text,
    status ('reproduced' | 'not reproduced' | 'inconclusive'), evidence (JSON), created, configs (JSON
    {model: config hash} of the configurations it was evaluated on).
``cell_claims``: cells being trained right now: cell_key, run_id, pid, host, started.  The claim itself is an
    exclusive ``flock`` on ``<store>.locks/<cell_key>.lock``, which the operating system releases when the
    process dies; the row only says who holds it.  A run left 'running' and a claim row left by a process that
    died (its lock is free) are marked 'interrupted' and removed by the next run (:meth:`mark_interrupted`).

A file that is not a store of this schema (not SQLite, another program's database, tables lacking columns) is
refused before anything is written to it, so it is left byte for byte as it was.  A full disk, a read-only file
system or an I/O error is named as such (SQLite rolls back by itself; a finished cell's rows stay in its run
directory's result.json and are stored by the rerun).
"""
from __future__ import annotations

import contextlib
import csv
import datetime as _dt
import fcntl
import json
import math
import os
import random
import socket
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
CREATE TABLE IF NOT EXISTS cell_claims (
    cell_key TEXT PRIMARY KEY, run_id TEXT NOT NULL DEFAULT '', pid INTEGER NOT NULL, host TEXT NOT NULL,
    started TEXT NOT NULL
);
"""
#: columns added after the first release: (table, column, declaration); old stores are migrated on open
ADDED_COLUMNS = (
    ("measurements", "cell_key", "TEXT NOT NULL DEFAULT ''"),
    ("measurements", "group_key", "TEXT NOT NULL DEFAULT ''"),
    ("measurements", "extractor_id", "TEXT NOT NULL DEFAULT ''"),
    ("runs", "cell_key", "TEXT NOT NULL DEFAULT ''"),
    ("runs", "group_key", "TEXT NOT NULL DEFAULT ''"),
    ("runs", "checkpoint", "TEXT NOT NULL DEFAULT ''"),
    ("claims", "configs", "TEXT NOT NULL DEFAULT '{}'"),
    ("measurements", "snapshot", "INTEGER NOT NULL DEFAULT 0"),
    ("measurements", "at_step", "INTEGER NOT NULL DEFAULT -1"),
    ("measurements", "images_seen", "INTEGER NOT NULL DEFAULT -1"),
    ("measurements", "train_seconds", "REAL NOT NULL DEFAULT -1"),
)
INDEXES = """
CREATE INDEX IF NOT EXISTS m_cell ON measurements(cell_key, metric);
CREATE INDEX IF NOT EXISTS m_group ON measurements(group_key);
CREATE INDEX IF NOT EXISTS m_where ON measurements(protocol, dataset, budget, model, seed, metric);
"""

MEASUREMENT_COLUMNS = ("run_id", "model", "protocol", "dataset", "budget", "seed", "metric", "value",
                       "extractor", "n_samples", "config_hash", "code_version", "created", "extra",
                       "cell_key", "group_key", "extractor_id", "snapshot", "at_step", "images_seen",
                       "train_seconds")
#: the columns an older store may lack, with the value they mean there
COLUMN_DEFAULTS = {"cell_key": "", "group_key": "", "extractor_id": "", "snapshot": 0, "at_step": -1,
                   "images_seen": -1, "train_seconds": -1.0}
CLAIM_STATUSES = ("reproduced", "not reproduced", "inconclusive")
TABLES = ("measurements", "runs", "claims", "cell_claims")
SQLITE_HEADER = b"SQLite format 3\x00"
#: SQLite's primary result codes that are about the disk, not the file's content: what each means for the user
DISK_ERRORS = {13: "the disk is full", 8: "the file or its file system is read-only", 10: "a disk I/O error"}
SAFE = ("finished cells are safe in their run directories (result.json) and the rerun stores them")


class StoreError(ValueError):
    """The results store cannot be opened or written; ``str()`` names the file and what to do."""


def _rollback(con: sqlite3.Connection) -> None:
    """Roll back what is still open; SQLite has already rolled back after some errors (a full disk), and a
    ROLLBACK then would raise its own error and hide the one that matters."""
    if con.in_transaction:
        with contextlib.suppress(sqlite3.Error):
            con.execute("ROLLBACK")


def _schema_columns() -> Dict[str, set]:
    """{table: columns} of :data:`SCHEMA` as first released (the columns every store has)."""
    con = sqlite3.connect(":memory:")
    try:
        con.executescript(SCHEMA)
        return {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})")} for t in TABLES}
    finally:
        con.close()


BASE_COLUMNS = _schema_columns()


def schema_problems(have: Dict[str, set]) -> List[str]:
    """Why tables ``{name: columns}`` are not an avade-bench store: the tables or columns it lacks (with the
    columns it has that the schema does not know); [] when it is one (or an empty database, made a store)."""
    if not any(have.values()):
        return []
    if not have.get("measurements") and not have.get("runs"):
        return [f"it is a database of another program (its tables: {', '.join(sorted(have)) or 'none'})"]
    known = {t: BASE_COLUMNS[t] | {c for tt, c, _ in ADDED_COLUMNS if tt == t} for t in TABLES}
    out = []
    for t in [t for t in ("measurements", "runs", "claims") if t in have]:     # a first release had no runs yet
        missing, extra = sorted(BASE_COLUMNS[t] - have[t]), sorted(have[t] - known[t])
        if missing:
            out.append(f"table {t} lacks column(s) {', '.join(missing)}"
                       + (f" and has column(s) {', '.join(extra)} it does not know" if extra else ""))
    return out


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
    cell_key: str = ""
    group_key: str = ""
    extractor_id: str = ""
    snapshot: int = 0            # 0: final evaluation; i >= 1: the i-th snapshot along training
    at_step: int = -1
    images_seen: int = -1
    train_seconds: float = -1.0

    def row(self) -> tuple:
        d = asdict(self)
        d["extra"] = json.dumps(self.extra, sort_keys=True)
        return tuple(d[c] for c in MEASUREMENT_COLUMNS)


class CellClaim:
    """An exclusive claim on one cell (see the module docstring); release it with :meth:`release`."""

    def __init__(self, store: "ResultsStore", cell_key: str, fd: int):
        self.store, self.cell_key, self._fd = store, cell_key, fd

    def release(self) -> None:
        if self._fd < 0:
            return
        try:
            self.store._write("DELETE FROM cell_claims WHERE cell_key=? AND pid=?", [(self.cell_key, os.getpid())])
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> "CellClaim":
        return self

    def __exit__(self, *exc) -> None:
        self.release()


class ResultsStore:
    """Append-only SQLite store; safe for concurrent writers (WAL + busy timeout + retries).

    ``readonly=True`` opens an existing store without creating or migrating anything (the leaderboard)."""

    LOCK_WAIT_S = 120.0   # how long any one operation keeps retrying "database is locked"

    def __init__(self, path: str | os.PathLike, readonly: bool = False):
        self.path = Path(path)
        self.readonly = readonly
        if readonly:
            if not self.path.is_file():
                raise StoreError(f"results store {self.path} does not exist or is not a file; pass "
                                 f"--results PATH/TO/results.sqlite")
            self._columns = self._inspect(empty_ok=False)
            return
        if self.path.exists() and not self.path.is_file():
            raise StoreError(f"results store {self.path} is not a file; pass --results PATH/TO/results.sqlite")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except (FileExistsError, NotADirectoryError):
            raise StoreError(f"cannot create the results store {self.path}: {self.path.parent} is not a folder; "
                             f"pass --results with a path in a folder") from None
        self._inspect(empty_ok=True)          # a file of anything else is refused before it is touched
        self._retrying(self._set_wal, "open")
        self._retrying(self._migrate, "create the tables of")
        self._columns = self._retrying(self._table_columns, "read")

    def _inspect(self, empty_ok: bool) -> Dict[str, set]:
        """The tables and columns of the file, read without writing; a file that is not a store of this schema is
        refused (one line naming what it lacks) and left exactly as it was."""
        if not self.path.is_file() or (empty_ok and self.path.stat().st_size == 0):
            return {}
        with open(self.path, "rb") as f:
            if f.read(len(SQLITE_HEADER)) != SQLITE_HEADER and self.path.stat().st_size > 0:
                raise StoreError(f"results store {self.path}: file is not a database (not an SQLite file); it was "
                                 f"left unchanged: pass another --results, or move this file away")
        have = self._retrying(self._table_columns, "read", readonly=True)
        problems = schema_problems(have) or ([] if empty_ok or have.get("measurements") else
                                             ["it has no tables"])
        if problems:
            raise StoreError(f"{self.path} is not an avade-bench results store: {'; '.join(problems)}; it was left "
                             f"unchanged: pass another --results")
        return have

    def _set_wal(self) -> None:
        with self._connect() as con:
            if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
                con.execute("PRAGMA journal_mode=WAL")

    def _retrying(self, operation, what: str, **kw):
        """Run ``operation(**kw)``, retrying SQLite's "database is locked" with backoff for up to ``LOCK_WAIT_S``."""
        deadline = time.monotonic() + self.LOCK_WAIT_S
        attempt = 0
        while True:
            try:
                return operation(**kw)
            except sqlite3.OperationalError as e:
                if "locked" not in str(e):     # SQLITE_BUSY and SQLITE_LOCKED both read "... is locked"
                    raise StoreError(f"cannot {what} the results store {self.path}: {e}") from None
                if time.monotonic() >= deadline:
                    raise StoreError(f"cannot {what} the results store {self.path}: {e} for {self.LOCK_WAIT_S:.0f} "
                                     f"s (another process holds it: let it finish, or pass another "
                                     f"--results)") from None
                attempt += 1
                time.sleep(min(0.01 * 2 ** min(attempt, 6), 0.5) * (0.5 + random.random()))

    def _migrate(self) -> None:
        """Create the tables and add the columns of newer releases, in one transaction (processes that open a
        new store at the same moment take turns)."""
        statements = [s for s in (SCHEMA + INDEXES).split(";") if s.strip()]
        with self._connect() as con:
            con.execute("BEGIN IMMEDIATE")
            try:
                for sql in statements[:4]:
                    con.execute(sql)
                have = {t: {r[1] for r in con.execute(f"PRAGMA table_info({t})")}
                        for t in ("measurements", "runs", "claims")}
                for table, col, decl in ADDED_COLUMNS:
                    if col not in have[table]:
                        con.execute(f"ALTER TABLE {table} ADD COLUMN {col} {decl}")
                for sql in statements[4:]:
                    con.execute(sql)
                con.execute("COMMIT")
            except BaseException:
                _rollback(con)
                raise

    # ---- connections ------------------------------------------------------------------
    @contextmanager
    def _connect(self, readonly: Optional[bool] = None) -> Iterator[sqlite3.Connection]:
        try:
            if self.readonly if readonly is None else readonly:
                con = sqlite3.connect(f"{self.path.resolve().as_uri()}?mode=ro", uri=True, timeout=60.0,
                                      isolation_level=None)
            else:
                con = sqlite3.connect(self.path, timeout=60.0, isolation_level=None)
        except sqlite3.Error as e:
            raise StoreError(f"cannot open the results store {self.path}: {e}") from None
        try:
            con.execute("PRAGMA busy_timeout=60000")
            con.row_factory = sqlite3.Row
            yield con
        except sqlite3.DatabaseError as e:
            if isinstance(e, sqlite3.OperationalError) and "locked" in str(e):
                raise
            raise self._error(e) from None
        finally:
            con.close()

    def _error(self, e: sqlite3.Error) -> StoreError:
        """One line naming the cause: the disk (full, read-only, failing) or the file (not a store)."""
        code = (getattr(e, "sqlite_errorcode", None) or 0) & 0xFF
        if code not in DISK_ERRORS:
            code = next((c for c, w in ((13, "is full"), (8, "readonly"), (10, "I/O error")) if w in str(e)), 0)
        if code in DISK_ERRORS:
            return StoreError(f"results store {self.path}: {DISK_ERRORS[code]} (SQLite: {e}); make room, or pass "
                              f"another --results, then rerun: {SAFE}")
        return StoreError(f"results store {self.path}: {e} (is it an avade-bench SQLite store? pass another "
                          f"--results, or move this file away)")

    def _table_columns(self, readonly: Optional[bool] = None) -> Dict[str, set]:
        with self._connect(readonly) as con:
            names = [r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")]
            return {t: {r[1] for r in con.execute("PRAGMA table_info('%s')" % t.replace("'", "''"))}
                    for t in names if not t.startswith("sqlite_")}

    def _write(self, sql: str, rows: List[tuple]) -> None:
        self._transaction([(sql, rows)])

    def _transaction(self, statements: List[tuple]) -> None:
        """Run ``[(sql, rows), ...]`` in one transaction (all or nothing), retrying while locked."""
        if self.readonly:
            raise StoreError(f"results store {self.path} was opened read-only")

        def run() -> None:
            with self._connect() as con:
                con.execute("BEGIN IMMEDIATE")
                try:
                    for sql, rows in statements:
                        con.executemany(sql, rows)
                    con.execute("COMMIT")
                except BaseException:
                    _rollback(con)
                    raise

        self._retrying(run, "write")

    # ---- writes -----------------------------------------------------------------
    @staticmethod
    def _rows(measurements: Iterable[Measurement]) -> List[tuple]:
        rows = []
        for m in measurements:
            if not isinstance(m.value, (int, float)) or not math.isfinite(float(m.value)):
                raise ValueError(f"refusing to store non-finite {m.metric}={m.value!r} for {m.model}")
            rows.append(m.row())
        return rows

    _INSERT = (f"INSERT INTO measurements ({', '.join(MEASUREMENT_COLUMNS)}) "
               f"VALUES ({', '.join('?' * len(MEASUREMENT_COLUMNS))})")

    def add(self, measurements: Iterable[Measurement]) -> int:
        rows = self._rows(measurements)
        if rows:
            self._write(self._INSERT, rows)
        return len(rows)

    def commit_cell(self, run_id: str, measurements: Iterable[Measurement], checkpoint: str = "") -> int:
        """Store a cell's rows and mark its run done in ONE transaction: a run is never 'done' without its
        rows, and its rows are never stored for a run that is not done.  The rows replace whatever was stored
        under the same cell keys (a re-measured cell is stored once, with its newest values)."""
        measurements = list(measurements)
        rows = self._rows(measurements)
        keys = sorted({m.cell_key for m in measurements if m.cell_key})
        self._transaction([("DELETE FROM measurements WHERE cell_key=?", [(k,) for k in keys]),
                           (self._INSERT, rows),
                           ("UPDATE runs SET status='done', finished=?, checkpoint=? WHERE run_id=?",
                            [(utcnow(), checkpoint, run_id)])])
        return len(rows)

    def start_run(self, run_id: str, *, model: str, protocol: str, dataset: str, budget: str, seed: int,
                  run_dir: str = "", config: Optional[dict] = None, config_hash: str = "",
                  code_version: str = "", cell_key: str = "", group_key: str = "") -> None:
        self._write("INSERT OR REPLACE INTO runs (run_id, model, protocol, dataset, budget, seed, run_dir, "
                    "config, config_hash, code_version, status, created, cell_key, group_key) "
                    "VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
                    [(run_id, model, protocol, dataset, budget, seed, str(run_dir),
                      json.dumps(config or {}, sort_keys=True, default=str), config_hash, code_version,
                      "running", utcnow(), cell_key, group_key)])

    def finish_run(self, run_id: str, status: str = "done") -> None:
        self._write("UPDATE runs SET status=?, finished=? WHERE run_id=?", [(status, utcnow(), run_id)])

    def add_claim(self, *, protocol: str, dataset: str, budget: str, claim_id: str, text: str, status: str,
                  evidence: dict, extractor: str = "", configs: Optional[Dict[str, str]] = None) -> None:
        if status not in CLAIM_STATUSES:
            raise ValueError(f"claim status must be one of {CLAIM_STATUSES}, not {status!r}")
        self._write("INSERT INTO claims (protocol, dataset, budget, extractor, claim_id, text, status, evidence, "
                    "created, configs) VALUES (?,?,?,?,?,?,?,?,?,?)",
                    [(protocol, dataset, budget, extractor, claim_id, text, status,
                      json.dumps(evidence, sort_keys=True, default=float), utcnow(),
                      json.dumps(configs or {}, sort_keys=True))])

    # ---- claims on cells (who trains what, right now) ----------------------------------------
    def _lock_path(self, cell_key: str) -> Path:
        return self.path.with_name(self.path.name + ".locks") / f"{cell_key}.lock"

    def claim_cell(self, cell_key: str, run_id: str = "", wait: bool = False,
                   record: bool = True) -> Optional[CellClaim]:
        """Claim a cell before training it; None when another live process holds it (``wait=False``).

        With ``wait=True`` this blocks until the holder finishes or dies.  A claim left by a killed process
        is free again: the operating system dropped its lock.  ``record=False`` takes the lock without writing
        the row that says who holds it (a moment's claim, to clean up after a dead holder)."""
        path = self._lock_path(cell_key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            os.close(fd)
            return None
        except BaseException:
            os.close(fd)
            raise
        try:
            if record:
                self._write("INSERT OR REPLACE INTO cell_claims (cell_key, run_id, pid, host, started) "
                            "VALUES (?,?,?,?,?)", [(cell_key, run_id, os.getpid(), socket.gethostname(), utcnow())])
        except BaseException:
            fcntl.flock(fd, fcntl.LOCK_UN)
            os.close(fd)
            raise
        return CellClaim(self, cell_key, fd)

    def claim_holder(self, cell_key: str) -> Optional[Dict[str, Any]]:
        rows = self.query("SELECT * FROM cell_claims WHERE cell_key=?", (cell_key,))
        return rows[0] if rows else None

    def mark_interrupted(self) -> Dict[str, int]:
        """Runs left 'running' and claim rows left by a process that is gone (no live process holds the cell's
        lock) become 'interrupted' runs and no claim; each cell is handled while this process holds its lock,
        so a driver that claims it meanwhile is never touched.  Returns ``{"runs": n, "claims": m}``."""
        runs = self.query("SELECT run_id, cell_key FROM runs WHERE status='running' AND cell_key != ''")
        claims = self.query("SELECT cell_key FROM cell_claims")
        done = {"runs": 0, "claims": 0}
        for key in sorted({r["cell_key"] for r in runs} | {c["cell_key"] for c in claims}):
            claim = self.claim_cell(key, wait=False, record=False)
            if claim is None:
                continue                  # a live process trains it
            with claim:
                stale = [(utcnow(), r["run_id"]) for r in runs if r["cell_key"] == key]
                self._transaction([("UPDATE runs SET status='interrupted', finished=? WHERE run_id=? AND "
                                    "status='running'", stale),
                                   ("DELETE FROM cell_claims WHERE cell_key=?", [(key,)])])
            done["runs"] += len(stale)
            done["claims"] += any(c["cell_key"] == key for c in claims)
        return done

    # ---- reads ------------------------------------------------------------------
    def query(self, sql: str, params: tuple = ()) -> List[Dict[str, Any]]:
        def run() -> List[Dict[str, Any]]:
            with self._connect() as con:
                return [dict(r) for r in con.execute(sql, params).fetchall()]

        return self._retrying(run, "read")

    def measurements(self, **where: Any) -> List[Dict[str, Any]]:
        cols = [c for c in where if c in MEASUREMENT_COLUMNS]
        if len(cols) != len(where):
            raise ValueError(f"unknown measurement column(s): {sorted(set(where) - set(cols))}")
        clause = " AND ".join(f"{c} = ?" for c in cols) or "1"
        rows = self.query(f"SELECT * FROM measurements WHERE {clause} ORDER BY id", tuple(where[c] for c in cols))
        for r in rows:
            r["extra"] = json.loads(r["extra"] or "{}")
            for c in MEASUREMENT_COLUMNS:
                r.setdefault(c, COLUMN_DEFAULTS.get(c, ""))   # a read-only store of an older schema
        return rows

    def runs(self) -> List[Dict[str, Any]]:
        rows = self.query("SELECT rowid AS seq, * FROM runs ORDER BY created, rowid")
        for r in rows:
            r["config"] = json.loads(r["config"] or "{}")
            for c in ("cell_key", "group_key", "checkpoint"):
                r.setdefault(c, "")
        return rows

    def claims(self, latest_only: bool = True) -> List[Dict[str, Any]]:
        rows = self.query("SELECT * FROM claims ORDER BY id")
        for r in rows:
            r["evidence"] = json.loads(r["evidence"] or "{}")
            r["configs"] = json.loads(r.get("configs") or "{}")
        if latest_only:
            last: Dict[tuple, Dict[str, Any]] = {}
            for r in rows:
                configs = json.dumps(r["configs"], sort_keys=True)
                last[(r["protocol"], r["dataset"], r["budget"], r["extractor"], r["claim_id"], configs)] = r
            rows = list(last.values())
        return rows

    def has_cell(self, cell_key: str, metrics: Iterable[str]) -> bool:
        """True when every metric of the cell with this identity is stored."""
        have = {r["metric"] for r in self.query("SELECT DISTINCT metric FROM measurements WHERE cell_key=? AND "
                                                "snapshot=0", (cell_key,))}
        return bool(cell_key) and set(metrics) <= have

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
