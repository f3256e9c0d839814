"""What keeping freed memory (``common.memory.keep_freed_memory``, applied by the protocol driver) is worth per
trainer step: every Table 1 model at both settings, in two fresh processes (glibc's default malloc vs kept), run
alternately round by round.  The setting is process-wide and cannot be undone, hence the subprocesses.

Each process builds the model's trainer (``speed_utils.build_trainer``, fp32, channels-last as the cpu@32 preset),
runs warm-up steps, then times ``STEPS`` steps and reports the median step time, minor page faults and kernel
(system) time per step.  Reported: the median over rounds of default / kept step time.  Nothing is asserted.

    python -m pytest benchmarks/test_bench_allocator.py -p no:cacheprovider --benchmark-enable -s
    AVADE_BENCH_THREADS=2 AVADE_BENCH_ROUNDS=3 ...
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from speed_utils import SETTINGS, TABLE1, load_line, median

ROUNDS = int(os.environ.get("AVADE_BENCH_ROUNDS", "3"))
STEPS = int(os.environ.get("AVADE_BENCH_ALLOCATOR_STEPS", "5"))
HERE = Path(__file__).resolve().parent

CHILD = r"""
import json, resource, sys, tempfile, time
sys.path.insert(0, {here!r})
import torch
from common.memory import keep_freed_memory
mode, name, setting, steps, threads = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
applied = keep_freed_memory() if mode == "kept" else False
torch.set_num_threads(threads)
import protocols.api  # noqa: F401  registers the models
from speed_utils import build_trainer, train_step
tr = build_trainer(name, setting, tempfile.mkdtemp(), channels_last=True, overrides={{"train.autocast": "off"}})
for _ in range(3):
    train_step(tr)
times, r0 = [], resource.getrusage(resource.RUSAGE_SELF)
for _ in range(steps):
    t = time.perf_counter()
    train_step(tr)
    times.append(time.perf_counter() - t)
r1 = resource.getrusage(resource.RUSAGE_SELF)
print(json.dumps({{"applied": applied, "step_s": sorted(times)[len(times) // 2],
                  "faults_per_step": (r1.ru_minflt - r0.ru_minflt) / steps,
                  "sys_s_per_step": (r1.ru_stime - r0.ru_stime) / steps}}))
"""


def _child(mode: str, name: str, setting: str, threads: int) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"):
        env.pop(k, None)
    out = subprocess.run([sys.executable, "-c", CHILD.format(here=str(HERE)), mode, name, setting, str(STEPS),
                          str(threads)], capture_output=True, text=True, env=env, check=True, cwd=HERE.parent)
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", TABLE1)
def test_kept_memory_against_glibc_default(benchmark, name, setting, bench_threads):
    load_before = load_line()
    runs = {"default": [], "kept": []}

    def measure():
        for _ in range(ROUNDS):
            for mode in runs:
                runs[mode].append(_child(mode, name, setting, bench_threads))

    benchmark.pedantic(measure, rounds=1, iterations=1)
    ratios = [d["step_s"] / k["step_s"] for d, k in zip(runs["default"], runs["kept"])]
    info = {"model": name, "setting": setting, "threads": bench_threads, "rounds": ROUNDS, "steps": STEPS,
            "applied": all(r["applied"] for r in runs["kept"]), "speedup": median(ratios),
            "load_before": load_before, "load_after": load_line()}
    for mode, rs in runs.items():
        info[f"{mode}_step_ms"] = median(r["step_s"] for r in rs) * 1e3
        info[f"{mode}_faults_per_step"] = median(r["faults_per_step"] for r in rs)
        info[f"{mode}_sys_ms_per_step"] = median(r["sys_s_per_step"] for r in rs) * 1e3
    benchmark.extra_info.update(info)
    print(f"\nallocator {name:6s} {setting:10s} threads {bench_threads}: glibc default {info['default_step_ms']:.0f} ms "
          f"({info['default_faults_per_step']:.0f} faults, {info['default_sys_ms_per_step']:.0f} ms kernel) -> kept "
          f"{info['kept_step_ms']:.0f} ms ({info['kept_faults_per_step']:.0f} faults, "
          f"{info['kept_sys_ms_per_step']:.0f} ms kernel): x{info['speedup']:.2f}; {load_before} -> {info['load_after']}")
