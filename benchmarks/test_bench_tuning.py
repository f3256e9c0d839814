"""Local parallelism and pruning, each as a ratio of two wall clocks measured in one run on the same machine.

* The main job (the README's: Table 1 on digits at the cpu budget, 3 seeds) with ``--workers 2`` (a pool of two
  processes, one thread each) against today's run, one cell after another with every core: wall clock of the
  pool / wall clock of the sequential run (on 2 idle cores the ideal is a little above 0.5: the pool's start-up,
  and two one-thread cells beat one two-thread cell only where a cell cannot use two threads well).
* A tuning study (gan and vae, two workers) with pruning at the snapshots (median) against the same study without
  (``--prune none``): wall clock with / without, with the number of trials pruned and the best FID each found.

    python -m pytest benchmarks/test_bench_tuning.py -p no:cacheprovider --benchmark-enable -s
    AVADE_BENCH_MAIN_SEEDS=1 AVADE_BENCH_MAIN_SET="train.steps=200" ...     # a smaller main job (CPU minutes)
    AVADE_BENCH_STUDY_TRIALS=8 AVADE_BENCH_STUDY_STEPS=400 ...               # the study's size

Each side runs into its own store and run folder (shared cells would be skipped); the domain classifier is
trained once before the timed runs (the shared feature cache).
"""
from __future__ import annotations

import os
import time

import pytest

MAIN_SEEDS = int(os.environ.get("AVADE_BENCH_MAIN_SEEDS", "3"))
MAIN_SET = dict(kv.split("=", 1) for kv in os.environ.get("AVADE_BENCH_MAIN_SET", "").split() if "=" in kv)
STUDY_TRIALS = int(os.environ.get("AVADE_BENCH_STUDY_TRIALS", "8"))
STUDY_STEPS = os.environ.get("AVADE_BENCH_STUDY_STEPS", "400")


def _loads() -> str:
    return "load " + " ".join(f"{v:.1f}" for v in os.getloadavg())


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    """One feature cache for both sides, warmed with the domain classifiers both thread counts use."""
    from protocols.api import run_protocol
    d = tmp_path_factory.mktemp("cache")
    os.environ.setdefault("AVADE_CACHE", str(d / "cache"))
    for threads in {"1", str(len(os.sched_getaffinity(0)))}:
        run_protocol("ablation", models=["vae"], budget="smoke", seeds=1, progress=False, results=d / "w.sqlite",
                     out=d / f"warm{threads}", overrides={"train.threads": threads, "train.steps": "2"})
    return d


@pytest.mark.benchmark(group="tuning")
def test_the_main_job_on_two_workers_against_one_cell_after_another(benchmark, tmp_path, cache):
    from protocols.api import run_protocol
    from protocols.executors import ExecutorOptions
    times = {}

    def job(name, executor=None):
        t0 = time.perf_counter()
        res = run_protocol("ablation", budget="cpu", seeds=MAIN_SEEDS, progress=False, overrides=dict(MAIN_SET),
                           results=tmp_path / f"{name}.sqlite", out=tmp_path / name, executor=executor)
        assert {c.status for c in res.cells} == {"done"}, res.cells
        times[name] = time.perf_counter() - t0
        print(f"\n{name}: {times[name]:.1f} s ({_loads()})", flush=True)

    benchmark.pedantic(lambda: (job("sequential"), job("workers2", ExecutorOptions("local", workers=2))),
                       rounds=1, iterations=1)
    ratio = times["workers2"] / times["sequential"]
    print(f"main job ({MAIN_SEEDS} seeds{', ' + str(MAIN_SET) if MAIN_SET else ''}): sequential "
          f"{times['sequential']:.1f} s, --workers 2 {times['workers2']:.1f} s = {ratio:.2f} of sequential")
    benchmark.extra_info.update({"seconds": times, "ratio": ratio, "seeds": MAIN_SEEDS, "set": MAIN_SET})


@pytest.mark.benchmark(group="tuning")
def test_a_study_with_pruning_against_the_same_study_without(benchmark, tmp_path, cache):
    from common.store import ResultsStore
    from common.studies import StudyRecords
    from protocols.executors import ExecutorOptions
    from protocols.tuning import StudySpec, run_study
    times, found = {}, {}

    def study(pruner):
        spec = StudySpec("ablation", STUDY_TRIALS, models=["gan", "vae"], budget="cpu", pruner=pruner,
                         overrides={"train.steps": STUDY_STEPS, "train.threads": "1"})
        t0 = time.perf_counter()
        run_study(spec, results=tmp_path / f"{pruner}.sqlite", out=tmp_path / pruner, progress=False, confirm=False,
                  executor=ExecutorOptions("local", workers=2))
        times[pruner] = time.perf_counter() - t0
        trials = StudyRecords(ResultsStore(tmp_path / f"{pruner}.sqlite")).trials()
        found[pruner] = {"pruned": sum(t["state"] == "pruned" for t in trials),
                         "best_fid": {m: min((t["fid"] for t in trials if t["model"] == m and t["state"] == "complete"),
                                             default=None) for m in ("gan", "vae")}}
        print(f"\n--prune {pruner}: {times[pruner]:.1f} s, {found[pruner]} ({_loads()})", flush=True)

    benchmark.pedantic(lambda: (study("none"), study("median")), rounds=1, iterations=1)
    ratio = times["median"] / times["none"]
    print(f"study of {STUDY_TRIALS} trials x (gan, vae), {STUDY_STEPS} steps: pruned (median) {times['median']:.1f} s "
          f"= {ratio:.2f} of unpruned {times['none']:.1f} s; {found}")
    benchmark.extra_info.update({"seconds": times, "ratio": ratio, "found": found, "trials": STUDY_TRIALS})
