"""Concurrent builds of one site: builds are serialised by an exclusive lock on ``<out>/.build.lock`` and read the
store inside it, so the page left on disk reflects every row committed before the last build started (a trial
with four protocol runs finishing at once once left a page built from 33 of 44 rows)."""
import multiprocessing as mp
import re
import threading
import time
from pathlib import Path

from leaderboard.build import LOCK_NAME, build
from metrics import keys
from common.store import Measurement, ResultsStore


def _rows_on_page(index: Path) -> int:
    return int(re.search(r'data-measurements="(\d+)"', index.read_text()).group(1))


def _commit(store: ResultsStore, worker: int, i: int) -> None:
    """One protocol cell: a run, then its rows and its 'done' in one transaction (as protocols.api does)."""
    rid, group = f"w{worker}-c{i}", f"g-w{worker}"
    store.start_run(rid, model=f"m{worker}", protocol="ablation", dataset="digits", budget="cpu", seed=i,
                    config={"model": f"m{worker}", "train": {"steps": 3}}, config_hash=f"cfg{worker}",
                    group_key=group, cell_key=f"{group}-s{i}")
    store.commit_cell(rid, [Measurement(rid, f"m{worker}", "ablation", "digits", "cpu", i, metric, value, ext, n,
                                        config_hash=f"cfg{worker}", group_key=group, cell_key=f"{group}-s{i}",
                                        extractor_id="dom" if ext else "", extra={"checkpoint": "last (step 3)"})
                           for metric, value, ext, n in ((keys.BPD, 2.0 + i / 10, "", 100),
                                                         (keys.FID, 30.0 + worker + i, "domain", 500))],
                      checkpoint="last (step 3)")


def _protocol_process(results: str, out: str, worker: int, cells: int) -> None:
    """Like a protocol run: commit each cell, then rebuild the page (the CLI rebuilds at the end of a run)."""
    store = ResultsStore(results)
    for i in range(cells):
        _commit(store, worker, i)
        build(results, out)


def _builder_process(results: str, out: str, builds: int) -> None:
    for _ in range(builds):
        build(results, out)


def test_concurrent_builds_leave_a_page_with_every_committed_row(tmp_path):
    results, out = str(tmp_path / "results.sqlite"), str(tmp_path / "site")
    ResultsStore(results)
    ctx = mp.get_context("spawn")
    workers, cells = 4, 3
    procs = [ctx.Process(target=_protocol_process, args=(results, out, w, cells)) for w in range(workers)]
    procs += [ctx.Process(target=_builder_process, args=(results, out, 4)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=300)
    assert all(p.exitcode == 0 for p in procs), [p.exitcode for p in procs]
    total = len(ResultsStore(results, readonly=True).measurements())
    assert total == workers * cells * 2
    index = Path(out) / "index.html"
    assert _rows_on_page(index) == total
    html = index.read_text()
    assert all(f">m{w}<" in html or f">m{w} " in html for w in range(workers))
    assert not list(Path(out).glob(".index.html.*.tmp")) and not list((Path(out) / "img").glob(".*.tmp"))


def test_a_waiting_build_reads_the_store_after_it_gets_the_lock(tmp_path):
    """Deterministic: while the lock is held, a build waits; rows committed meanwhile are on its page."""
    import fcntl
    results, out = tmp_path / "results.sqlite", tmp_path / "site"
    store = ResultsStore(results)
    _commit(store, 0, 0)
    build(results, out)
    assert _rows_on_page(out / "index.html") == 2
    with open(out / LOCK_NAME, "a+") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        done = []
        t = threading.Thread(target=lambda: done.append(build(results, out)))
        t.start()
        time.sleep(0.5)
        assert t.is_alive() and not done            # waiting for the lock, has not read the store yet
        _commit(store, 1, 0)                        # committed while the build waits
        fcntl.flock(held, fcntl.LOCK_UN)
    t.join(timeout=120)
    assert done and _rows_on_page(out / "index.html") == 4
