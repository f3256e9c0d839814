"""Results store: concurrent writers lose nothing, non-finite values refused, exports."""
import csv
import json
import multiprocessing as mp

import pytest

from common.store import Measurement, ResultsStore, StoreError


def _writer(path, worker, n):
    store = ResultsStore(path)
    for i in range(n):  # one transaction per row: the worst case for contention
        store.add([Measurement(f"run{worker}", "avade", "ablation", "digits", "cpu", worker, "fid", float(i),
                               extractor="domain", n_samples=5000, extra={"i": i})])


def test_four_processes_writing_200_rows_each_lose_none(tmp_path):
    path = tmp_path / "r.sqlite"
    ResultsStore(path)
    ctx = mp.get_context("spawn")
    procs = [ctx.Process(target=_writer, args=(path, w, 200)) for w in range(4)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    rows = ResultsStore(path).measurements()
    assert len(rows) == 800
    for w in range(4):
        assert sorted(r["value"] for r in rows if r["seed"] == w) == [float(i) for i in range(200)]
    mode = ResultsStore(path).query("PRAGMA journal_mode")[0]["journal_mode"]
    assert mode == "wal"


def _open_and_write(path, barrier, worker, errors):
    try:
        barrier.wait(30)
        store = ResultsStore(path)
        store.start_run(f"run{worker}", model="vae", protocol="ablation", dataset="digits", budget="smoke", seed=0)
        store.runs()
    except Exception as e:  # noqa: BLE001 - reported to the parent
        errors.put(f"{type(e).__name__}: {e}")


def test_processes_opening_a_new_store_at_the_same_moment_all_succeed(tmp_path):
    """Switching a new store to WAL answers "database is locked" at once (no busy wait) to the loser of the race;
    before the store retried that, about 1 in 5 of these trials failed."""
    ctx = mp.get_context("fork")
    errors = ctx.Queue()
    for trial in range(12):
        path = tmp_path / f"r{trial}.sqlite"
        barrier = ctx.Barrier(4)
        procs = [ctx.Process(target=_open_and_write, args=(path, barrier, w, errors)) for w in range(4)]
        for p in procs:
            p.start()
        for p in procs:
            p.join(120)
            assert p.exitcode == 0
        assert errors.empty(), errors.get()
        assert len(ResultsStore(path).runs()) == 4


def test_a_lock_is_retried_and_a_lock_that_lasts_is_a_clear_error(tmp_path, monkeypatch):
    import sqlite3
    store = ResultsStore(tmp_path / "r.sqlite")
    calls = []

    def locked_twice():
        calls.append(1)
        if len(calls) < 3:
            raise sqlite3.OperationalError("database is locked")
        return "done"

    assert store._retrying(locked_twice, "write") == "done" and len(calls) == 3

    def always_locked():
        raise sqlite3.OperationalError("database is locked")

    monkeypatch.setattr(ResultsStore, "LOCK_WAIT_S", 0.2)
    with pytest.raises(StoreError, match=r"cannot write the results store .*r\.sqlite.*another process holds it"):
        store._retrying(always_locked, "write")
    with pytest.raises(StoreError, match="no such table"):   # not a lock: no retrying
        store._retrying(lambda: (_ for _ in ()).throw(sqlite3.OperationalError("no such table: x")), "read")


def test_non_finite_values_never_reach_the_store(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="non-finite"):
        store.add([Measurement("r", "m", "p", "d", "cpu", 0, "bpd", float("nan"))])
    assert store.measurements() == []


def test_exports_and_cells(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.add([Measurement("r", "vae", "ablation", "digits", "cpu", 0, m, v, extra={"k": 1}, cell_key="c0",
                           group_key="g")
               for m, v in (("bpd", 3.2), ("fid", 40.0))])
    assert store.has_cell("c0", ["bpd", "fid"])
    assert not store.has_cell("c0", ["bpd", "is"]) and not store.has_cell("c1", ["bpd"])
    assert store.export_jsonl(tmp_path / "m.jsonl") == 2
    lines = [json.loads(l) for l in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert {l["metric"] for l in lines} == {"bpd", "fid"} and lines[0]["extra"] == {"k": 1}
    assert store.export_csv(tmp_path / "m.csv") == 2
    with open(tmp_path / "m.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[1]["value"]) == 40.0 and rows[1]["cell_key"] == "c0"
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="c1", text="t",
                    status="reproduced", evidence={"a": 1.0}, configs={"vae": "h1"})
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="c1", text="t",
                    status="inconclusive", evidence={"a": 2.0}, configs={"vae": "h1"})
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="c1", text="t",
                    status="reproduced", evidence={"a": 3.0}, configs={"vae": "h2"})
    latest = {c["configs"]["vae"]: c["status"] for c in store.claims()}
    assert latest == {"h1": "inconclusive", "h2": "reproduced"}     # one verdict per configuration set
    with pytest.raises(ValueError):
        store.add_claim(protocol="p", dataset="d", budget="b", claim_id="c", text="t", status="maybe",
                        evidence={})


def test_commit_cell_stores_rows_and_marks_done_together(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.start_run("run1", model="vae", protocol="ablation", dataset="digits", budget="cpu", seed=0)
    bad = [Measurement("run1", "vae", "ablation", "digits", "cpu", 0, "bpd", 3.0, cell_key="c"),
           Measurement("run1", "vae", "ablation", "digits", "cpu", 0, "fid", float("inf"), cell_key="c")]
    with pytest.raises(ValueError, match="non-finite"):
        store.commit_cell("run1", bad)
    assert store.measurements() == [] and store.runs()[0]["status"] == "running"
    store.commit_cell("run1", bad[:1], checkpoint="last (step 4)")
    run = store.runs()[0]
    assert run["status"] == "done" and run["checkpoint"] == "last (step 4)" and len(store.measurements()) == 1


def _hold_claim(path, key, ready, release):
    store = ResultsStore(path)
    claim = store.claim_cell(key, "run-x")
    assert claim is not None
    ready.set()
    release.wait(60)
    if release.is_set() and ready.is_set():
        claim.release()


def _die_holding_claim(path, key, ready):
    import os
    ResultsStore(path).claim_cell(key, "run-y")
    ready.set()
    os._exit(0)          # no release: the operating system drops the lock with the process


def test_a_cell_is_claimed_by_one_process_and_freed_when_it_dies(tmp_path):
    path = tmp_path / "r.sqlite"
    store = ResultsStore(path)
    ctx = mp.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_claim, args=(path, "cellA", ready, release))
    holder.start()
    assert ready.wait(60)
    assert store.claim_cell("cellA") is None                       # held by a live process
    assert store.claim_holder("cellA")["pid"] == holder.pid
    other = store.claim_cell("cellB")                                # other cells are free
    assert other is not None
    other.release()
    release.set()
    holder.join(60)
    with store.claim_cell("cellA") as claim:                         # released normally
        assert claim is not None
    ready2 = ctx.Event()
    dying = ctx.Process(target=_die_holding_claim, args=(path, "cellC", ready2))
    dying.start()
    assert ready2.wait(60)
    dying.join(60)
    claim = store.claim_cell("cellC")                                # its holder died: free again
    assert claim is not None
    claim.release()
    assert store.query("SELECT COUNT(*) AS n FROM cell_claims WHERE cell_key IN ('cellA', 'cellB')")[0]["n"] == 0


def test_store_errors_name_the_file(tmp_path):
    junk = tmp_path / "junk.sqlite"
    junk.write_bytes(b"this is not a database" * 100)
    with pytest.raises(StoreError, match="junk.sqlite"):
        ResultsStore(junk)
    with pytest.raises(StoreError, match="junk.sqlite"):
        ResultsStore(junk, readonly=True).measurements()
    with pytest.raises(StoreError, match="not a file"):
        ResultsStore(tmp_path)
    blocker = tmp_path / "afile"
    blocker.write_text("x")
    with pytest.raises(StoreError, match="is not a folder"):
        ResultsStore(blocker / "r.sqlite")
    with pytest.raises(StoreError, match="does not exist"):
        ResultsStore(tmp_path / "none.sqlite", readonly=True)


def test_an_old_store_is_migrated_and_read_only_opening_changes_nothing(tmp_path):
    import sqlite3
    path = tmp_path / "old.sqlite"
    con = sqlite3.connect(path)
    con.executescript("""
        CREATE TABLE measurements (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL, model TEXT NOT NULL,
            protocol TEXT NOT NULL, dataset TEXT NOT NULL, budget TEXT NOT NULL, seed INTEGER NOT NULL,
            metric TEXT NOT NULL, value REAL NOT NULL, extractor TEXT NOT NULL DEFAULT '',
            n_samples INTEGER NOT NULL DEFAULT 0, config_hash TEXT NOT NULL DEFAULT '',
            code_version TEXT NOT NULL DEFAULT '', created TEXT NOT NULL, extra TEXT NOT NULL DEFAULT '{}');
        INSERT INTO measurements (run_id, model, protocol, dataset, budget, seed, metric, value, created)
            VALUES ('r', 'vae', 'ablation', 'digits', 'cpu', 0, 'bpd', 3.1, '2026-01-01');""")
    con.commit()
    con.close()
    before = path.read_bytes()
    rows = ResultsStore(path, readonly=True).measurements()
    assert rows[0]["value"] == 3.1 and rows[0]["cell_key"] == "" and path.read_bytes() == before
    migrated = ResultsStore(path)
    assert migrated.measurements()[0]["cell_key"] == "" and not migrated.has_cell("", ["bpd"])
