"""What the snapshots along training cost: their evaluation time against the training time of the same cell.

One cell of the ablation at the ``cpu`` budget (its 8 snapshots: FID/KID of 2,000 samples, BPD of 500 test
images), through the driver, in a fresh folder; the trainer records each snapshot's ``eval_seconds`` and the
cumulative ``train_seconds`` (training steps only) in ``snapshots.json``.  Reported: sum of eval_seconds /
train_seconds, with and without the first snapshot (which includes training the dataset's domain extractor
once; it is cached for every later cell of the dataset).  The issue's target is at most 0.15.

    python -m pytest benchmarks/test_bench_snapshots.py -p no:cacheprovider --benchmark-enable -s
    AVADE_BENCH_SNAPSHOT_MODEL=gan AVADE_BENCH_SNAPSHOT_DATASET=fashion-mnist ...
"""
from __future__ import annotations

import json
import os

import pytest

MODEL = os.environ.get("AVADE_BENCH_SNAPSHOT_MODEL", "vae")
DATASET = os.environ.get("AVADE_BENCH_SNAPSHOT_DATASET", "digits")


@pytest.mark.benchmark(group="snapshots")
def test_snapshot_evaluation_against_training_time(benchmark, tmp_path, bench_threads):
    from protocols.api import run_protocol

    def run():
        run_protocol("ablation", models=[MODEL], dataset=DATASET, budget="cpu", seeds=1, results=tmp_path / "r.sqlite",
                     out=tmp_path / "runs", overrides={"train.threads": str(bench_threads)}, progress=False,
                     fresh=True)

    benchmark.pedantic(run, rounds=1, iterations=1)
    (path,) = (tmp_path / "runs").glob(f"{DATASET}/ablation/{MODEL}/seed0-*/snapshots.json")
    records = json.loads(path.read_text())
    train = records[-1]["train_seconds"]
    evals = [r["eval_seconds"] for r in records]
    ratio, later = sum(evals) / train, sum(evals[1:]) / train
    print(f"\n{MODEL} on {DATASET}, cpu budget, {len(records)} snapshots, {bench_threads} thread(s): training "
          f"{train:.1f} s, snapshot evaluation {sum(evals):.1f} s = {ratio:.3f} of training "
          f"({later:.3f} without the first, which trains the domain extractor once)")
    benchmark.extra_info.update({"train_seconds": train, "eval_seconds": evals, "ratio": ratio,
                                 "ratio_without_first": later})
