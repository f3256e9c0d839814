"""Results store: concurrent writers lose nothing, non-finite values refused, exports."""
import csv
import json
import multiprocessing as mp

import pytest

from protocols.store import Measurement, ResultsStore


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


def test_non_finite_values_never_reach_the_store(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    with pytest.raises(ValueError, match="non-finite"):
        store.add([Measurement("r", "m", "p", "d", "cpu", 0, "bpd", float("nan"))])
    assert store.measurements() == []


def test_exports_and_cells(tmp_path):
    store = ResultsStore(tmp_path / "r.sqlite")
    store.add([Measurement("r", "vae", "ablation", "digits", "cpu", 0, m, v, extra={"k": 1})
               for m, v in (("bpd", 3.2), ("fid", 40.0))])
    assert store.has_cell(protocol="ablation", dataset="digits", budget="cpu", model="vae", seed=0,
                          metrics=["bpd", "fid"])
    assert not store.has_cell(protocol="ablation", dataset="digits", budget="cpu", model="vae", seed=1,
                              metrics=["bpd"])
    assert store.export_jsonl(tmp_path / "m.jsonl") == 2
    lines = [json.loads(l) for l in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert {l["metric"] for l in lines} == {"bpd", "fid"} and lines[0]["extra"] == {"k": 1}
    assert store.export_csv(tmp_path / "m.csv") == 2
    with open(tmp_path / "m.csv") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[1]["value"]) == 40.0
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="c1", text="t",
                    status="reproduced", evidence={"a": 1.0})
    store.add_claim(protocol="ablation", dataset="digits", budget="cpu", claim_id="c1", text="t",
                    status="inconclusive", evidence={"a": 2.0})
    assert [c["status"] for c in store.claims()] == ["inconclusive"]
    with pytest.raises(ValueError):
        store.add_claim(protocol="p", dataset="d", budget="b", claim_id="c", text="t", status="maybe",
                        evidence={})
