"""The scheduler's contract with a worker is the run directory's result.json: the driver ingests a result a
worker finished (its driver died before storing it) instead of training again, and never ingests another
cell's or an unreadable file."""
import json

from protocols.api import run_protocol
from protocols.executors import RESULT_FILE, read_result
from common.store import ResultsStore

KW = dict(models=["vae"], budget="smoke", seeds=1, progress=False, overrides={"eval.n_samples": "60"})


def test_a_finished_result_file_is_stored_without_training_again(tmp_path, capsys):
    first = run_protocol("ablation", results=tmp_path / "a.sqlite", out=tmp_path / "runs", **KW)
    assert {c.status for c in first.cells} == {"done"}
    capsys.readouterr()
    # the store of that run is lost (the driver died between the worker's result and its commit)
    second = run_protocol("ablation", results=tmp_path / "b.sqlite", out=tmp_path / "runs", **KW)
    out = capsys.readouterr().out
    assert {c.status for c in second.cells} == {"done"}
    assert "training and evaluating" not in out and out.count("stored now") == 2
    a, b = (ResultsStore(tmp_path / f"{n}.sqlite").measurements() for n in "ab")
    key = lambda r: (r["model"], r["metric"], r["snapshot"], r["cell_key"], r["value"])  # noqa: E731
    assert sorted(map(key, a)) == sorted(map(key, b))
    assert {r["status"] for r in ResultsStore(tmp_path / "b.sqlite").runs()} == {"done"}


def test_a_result_file_of_another_cell_or_unreadable_is_set_aside(tmp_path, capsys):
    (tmp_path / RESULT_FILE).write_text(json.dumps({"cell_key": "other", "measurements": []}))
    assert read_result(tmp_path, "mine") is None
    assert not (tmp_path / RESULT_FILE).exists() and len(list(tmp_path.glob(f"{RESULT_FILE}.unreadable-*"))) == 1
    (tmp_path / RESULT_FILE).write_text("{not json")
    assert read_result(tmp_path, "mine") is None and "the cell runs again" in capsys.readouterr().err
