"""Thread oversubscription: two concurrent training runs against one run alone, under several thread settings.

Each run is a subprocess of the CLI, with its own results store and run folder (the README's "several
comparisons at once" situation)::

    python -m protocols.run --protocol ablation --model vae --budget smoke --seeds 1 \\
        --set train.steps=300 --no-leaderboard --no-progress --results R --runs O

Settings (``--settings``, comma separated):

* ``default``: nothing set; the run picks its thread count itself ($OMP_NUM_THREADS, else the CPU affinity) and
  the CLI's OpenMP default applies (``GOMP_SPINCOUNT=1000``, ``protocols.run.OMP_DEFAULTS``);
* ``passive``: ``OMP_WAIT_POLICY=PASSIVE`` in the environment (idle OpenMP threads sleep at once; the CLI's
  previous default);
* ``spin300k``: ``GOMP_SPINCOUNT=300000``, libgomp's own default (what a run gets without the CLI's default);
* ``threads1``: ``--set train.threads=1`` in each run;
* ``omp1``: ``OMP_NUM_THREADS=1`` in the environment (caps every OpenMP pool, evaluation included);
* ``spin10k``: ``GOMP_SPINCOUNT=10000`` (libgomp, PyTorch's OpenMP on Linux, spins 10k iterations, not its
  default 300k, before an idle thread sleeps);
* ``pinned``: each run pinned to its own CPU with ``taskset -c i`` (the run then sees one CPU in its affinity
  and picks one thread itself).

For every setting and round (settings interleaved round by round, so load drifts hit all alike) it times one
run alone and two identical runs started together (wall time until both end), and reports the medians of
``pair / alone`` (the slowdown from running two at once; 2 cores and perfect sharing would give ~1 for two
1-thread runs) and ``alone / alone(default)`` (what a setting costs a run that is alone).  A warm-up run
first fills the shared feature cache (``$AVADE_CACHE``) so no timed run trains the domain classifier.

    python benchmarks/concurrency.py [--rounds 3] [--steps 300] [--model vae] [--settings default,passive,threads1]
        [--json out.json]
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Dict, List

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {
    "default": ({}, []),
    "passive": ({"OMP_WAIT_POLICY": "PASSIVE"}, []),
    "threads1": ({}, ["--set", "train.threads=1"]),
    "omp1": ({"OMP_NUM_THREADS": "1"}, []),
    "spin10k": ({"GOMP_SPINCOUNT": "10000"}, []),
    "spin300k": ({"GOMP_SPINCOUNT": "300000"}, []),
    "pinned": ({}, []),
}
PINNED = ("pinned",)


def command(model: str, steps: int, work: Path, tag: str, extra: List[str], cpu: int = -1) -> List[str]:
    pin = ["taskset", "-c", str(cpu % (os.cpu_count() or 1))] if cpu >= 0 else []
    return [*pin, sys.executable, "-m", "protocols.run", "--protocol", "ablation", "--model", model, "--budget", "smoke",
            "--seeds", "1", "--set", f"train.steps={steps}", *extra, "--no-leaderboard", "--no-progress",
            "--results", str(work / f"{tag}.sqlite"), "--runs", str(work / f"{tag}-runs")]


def environment(setting: str, cache: Path) -> Dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "OMP_NUM_THREADS", "GOMP_SPINCOUNT")}
    env.update(SETTINGS[setting][0])
    env["AVADE_CACHE"] = str(cache)
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return env


def run_together(cmds: List[List[str]], env: Dict[str, str]) -> float:
    """Wall seconds from starting every command to the last one ending (each must succeed)."""
    t = time.perf_counter()
    procs = [subprocess.Popen(c, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for c in cmds]
    for p in procs:
        _, err = p.communicate()
        if p.returncode:
            raise RuntimeError(f"run failed ({p.returncode}): {' '.join(p.args)}\n{err[-2000:]}")
    return time.perf_counter() - t


def measure(model: str, steps: int, settings: List[str], rounds: int) -> dict:
    work = Path(tempfile.mkdtemp(prefix="avade-concurrency-"))
    cache = work / "cache"
    run_together([command(model, steps, work, "warmup", [])], environment("default", cache))
    alone: Dict[str, List[float]] = {s: [] for s in settings}
    pair: Dict[str, List[float]] = {s: [] for s in settings}
    k = 0
    for r in range(rounds):
        for s in settings:
            env, extra = environment(s, cache), SETTINGS[s][1]
            k += 1
            pin = (lambda i: i) if s in PINNED else (lambda i: -1)
            alone[s].append(run_together([command(model, steps, work, f"a{k}", extra, pin(0))], env))
            pair[s].append(run_together([command(model, steps, work, f"p{k}{i}", extra, pin(i)) for i in (0, 1)], env))
            print(f"round {r} {s:9s} alone {alone[s][-1]:6.1f} s  pair {pair[s][-1]:6.1f} s  "
                  f"load {os.getloadavg()[0]:.2f}", flush=True)
    out = {"model": model, "steps": steps, "rounds": rounds, "cpus": os.cpu_count(), "settings": {}}
    ref = alone[settings[0]]
    for s in settings:
        out["settings"][s] = {
            "alone_s": statistics.median(alone[s]), "pair_s": statistics.median(pair[s]),
            "pair_over_alone": statistics.median(p / a for p, a in zip(pair[s], alone[s])),
            f"alone_over_alone_{settings[0]}": statistics.median(a / b for a, b in zip(alone[s], ref)),
            "alone_all": alone[s], "pair_all": pair[s]}
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="vae")
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--settings", default="default,passive,threads1")
    ap.add_argument("--json", default="")
    args = ap.parse_args()
    settings = [s for s in args.settings.split(",") if s]
    unknown = set(settings) - set(SETTINGS)
    if unknown:
        ap.error(f"unknown settings {sorted(unknown)}; choose from {', '.join(SETTINGS)}")
    print(f"load before: {os.getloadavg()}")
    res = measure(args.model, args.steps, settings, args.rounds)
    print(f"load after: {os.getloadavg()}")
    print(f"{'setting':10s}{'alone s':>9s}{'pair s':>9s}{'pair/alone':>12s}{'alone/alone(' + settings[0] + ')':>22s}")
    for s, v in res["settings"].items():
        print(f"{s:10s}{v['alone_s']:9.1f}{v['pair_s']:9.1f}{v['pair_over_alone']:12.2f}"
              f"{v[f'alone_over_alone_{settings[0]}']:22.2f}")
    if args.json:
        Path(args.json).write_text(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()
