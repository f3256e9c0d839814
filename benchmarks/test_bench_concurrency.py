"""Two concurrent training runs against one alone (thread oversubscription), through the CLI, in one run.

The measurement is ``concurrency.measure`` (its docstring lists the settings): for each setting, one run
alone and two identical runs started together, interleaved round by round; the reported ratio is the
median of ``pair / alone``.  Two runs that share 2 cores perfectly give ~2 when each alone uses both cores
and ~1 when each uses one.  Nothing is asserted.

    python -m pytest benchmarks/test_bench_concurrency.py -p no:cacheprovider --benchmark-enable -s
    AVADE_BENCH_CONCURRENCY="default,passive,threads1" AVADE_BENCH_ROUNDS=3 ...
"""
from __future__ import annotations

import os

from concurrency import SETTINGS, measure

ROUNDS = int(os.environ.get("AVADE_BENCH_ROUNDS", "3"))
CHOSEN = [s for s in os.environ.get("AVADE_BENCH_CONCURRENCY", "default,threads1").split(",") if s in SETTINGS]
STEPS = int(os.environ.get("AVADE_BENCH_CONCURRENCY_STEPS", "200"))


def test_two_concurrent_runs_against_one(benchmark):
    res = benchmark.pedantic(lambda: measure("vae", STEPS, CHOSEN, ROUNDS), rounds=1, iterations=1)
    benchmark.extra_info.update(res)
    print(f"\nconcurrency: vae, {STEPS} steps, {res['rounds']} rounds, {res['cpus']} CPUs")
    for s, v in res["settings"].items():
        print(f"  {s:9s} alone {v['alone_s']:6.1f} s  two at once {v['pair_s']:6.1f} s  "
              f"pair/alone {v['pair_over_alone']:.2f}")
