"""The cells of a grid fanned out: 2 models x 2 seeds (plus the protocol's 2 real-data floor cells) of the
ablation, each cell on one thread, run by the local executor (one cell after another) and by two workers
through Ray (a local cluster of 2 CPUs) and through submitit's local executor (2 processes).  Reported: wall
clock of each engine / wall clock of local, measured in one run on the same machine; on 2 idle cores the
ideal is 0.5 plus the engines' start-up (Ray's cluster, a Python + torch import per worker).

    pip install -e ".[slurm,ray]"
    python -m pytest benchmarks/test_bench_executors.py -p no:cacheprovider --benchmark-enable -s
    AVADE_BENCH_GRID_STEPS=400 ...         # shorter cells: start-up weighs more: start-up weighs less
"""
from __future__ import annotations

import os
import time

import pytest

STEPS = os.environ.get("AVADE_BENCH_GRID_STEPS", "3000")
GRID = dict(models=["vae", "gan"], budget="smoke", seeds=2, progress=False,
            overrides={"train.threads": "1", "train.steps": STEPS, "eval.n_samples": "500"})


@pytest.mark.benchmark(group="executors")
def test_two_workers_against_one_cell_after_another(benchmark, tmp_path):
    pytest.importorskip("ray", reason='pip install -e ".[ray]"')
    pytest.importorskip("submitit", reason='pip install -e ".[slurm]"')
    from protocols.api import run_protocol
    from protocols.executors import ExecutorOptions

    def grid(name, executor=None):
        t0 = time.perf_counter()
        res = run_protocol("ablation", results=tmp_path / f"{name}.sqlite", out=tmp_path / name, executor=executor,
                           **GRID)
        assert {c.status for c in res.cells} == {"done"}, res.cells
        return time.perf_counter() - t0

    run_protocol("ablation", models=["vae"], budget="smoke", seeds=1, progress=False, results=tmp_path / "w.sqlite",
                 out=tmp_path / "warm", overrides={"train.threads": "1", "train.steps": "2"})  # extractor cached
    times = {}

    def run():
        times["local"] = grid("local")
        times["ray"] = grid("ray", ExecutorOptions("ray", ray_num_cpus=2, poll_s=0.5))
        times["submitit"] = grid("submitit", ExecutorOptions("submitit", submitit_cluster="local", workers=2,
                                                             poll_s=0.5))

    benchmark.pedantic(run, rounds=1, iterations=1)
    ratios = {k: times[k] / times["local"] for k in ("ray", "submitit")}
    print(f"\n6 cells ({STEPS} steps each, 1 thread): local {times['local']:.1f} s; Ray 2 workers "
          f"{times['ray']:.1f} s = {ratios['ray']:.2f} of local; submitit 2 processes {times['submitit']:.1f} s = "
          f"{ratios['submitit']:.2f} of local")
    benchmark.extra_info.update({"seconds": times, "ratio_vs_local": ratios, "steps": int(STEPS)})
