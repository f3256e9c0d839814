"""Command line: train and evaluate models through the paper's protocols.

Examples::

    python -m protocols.run --list --budget cpu          # registries, then every model's steps, batch, sizes
    python -m protocols.run --protocol ablation --dataset digits --budget cpu --seeds 3
    python -m protocols.run --model avade --protocol gan_train_test --dataset digits
    python -m protocols.run --protocol ablation --dataset cifar10 --budget paper \\
        --data-root ~/data --set eval.inception_weights=~/weights/pt_inception-2015-12-05-6726825d.pth
    torchrun --nproc-per-node 4 -m protocols.run --protocol ablation --dataset cifar10 --budget paper
    python -m protocols.run --protocol ablation --dataset cifar10 --budget paper --seeds 3 \\
        --executor submitit --slurm-partition gpu --slurm-time 720      # one Slurm array, one GPU per cell
    python -m protocols.run --protocol ablation --dataset cifar10 --budget paper --seeds 3 --executor ray
    python -m protocols.run --protocol ablation --seeds 3 --workers 2                  # 2 cells at once here
    python -m protocols.run --protocol ablation --model gan --model avade --tune 12    # a tuning study per model

Rerunning skips a cell only when exactly that configuration is stored; ``--fresh`` retrains it.
``--set`` keys: ``train.*`` / ``eval.*`` (every cell), ``model.*`` (the models that have the key),
``<model>.<key>`` / ``<model>.train.<key>`` (one model).  ``--dry-run`` shows each value's origin.
Unknown names or bad values: one line on stderr and exit code 2 (``--debug`` for a traceback).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import List, Optional

from common import defaults
from common.cli import EXIT_FAILED, EXIT_OK, Parser, at_least, run_main


def parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m protocols.run", description=__doc__,
                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", action="append", help="model to run (repeatable; default: all of the protocol's)")
    p.add_argument("--protocol", default="ablation", help="protocol (paper table) to run [ablation]")
    p.add_argument("--dataset", default="digits", help="dataset name or folder:PATH [digits]")
    p.add_argument("--budget", default="cpu", help="smoke | cpu | paper [cpu]")
    p.add_argument("--recipe", default=None, help="optimisation recipe over the presets: preset (as tuned here) | "
                   "paper (Appendix C) | paper-gp10 [paper at --budget paper, else preset]")
    p.add_argument("--seed", type=at_least(0), default=0, help="first seed [0]")
    p.add_argument("--seeds", type=at_least(1), default=None, help="number of seeds (default: the protocol's)")
    p.add_argument("--data-root", default=None, help=defaults.HELP["--data-root"])
    p.add_argument("--download", action="store_true", help="allow torchvision to download missing data")
    p.add_argument("--inception-weights", default=None, help=defaults.HELP["--inception-weights"])
    for flag in ("--results", "--runs", "--site"):            # dest of --runs: "out" (run_protocol's out=)
        defaults.add_path_flag(p, flag, dest="out" if flag == "--runs" else None)
    defaults.add_deprecated(p, "--out", "--runs", dest="out")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set train.steps=100 or --set avade.adv_weight=10")
    p.add_argument("--resume", action="store_true", help="continue interrupted training from last.pt")
    p.add_argument("--fresh", action="store_true", help="retrain cells whose configuration is already stored")
    p.add_argument("--list", action="store_true", help="list registered models, protocols, datasets, metrics, and "
                   "each model's steps, batch and sizes at --budget on --dataset, each value with its source")
    p.add_argument("--dry-run", action="store_true", help="print the resolved config and plan; write nothing")
    p.add_argument("--no-leaderboard", action="store_true", help="do not rebuild the leaderboard at the end")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.add_argument("--json", action="store_true", help="print the result table as JSON")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    x = p.add_argument_group("executors", "where the cells run (the driver stays here and alone writes the store)")
    x.add_argument("--executor", default="local", help="local | submitit | ray [local: in this process]")
    x.add_argument("--workers", type=at_least(1), default=None,
                   help="cells at once (local: a pool of N processes, this machine's CPUs split between them; "
                        "Slurm: the array's parallelism; default: local one at a time, Slurm/Ray decide, "
                        "submitit's local executor: CPUs / threads)")
    x.add_argument("--gpus-per-cell", type=at_least(0, float), default=None,
                   help="GPUs of each cell (default 1 on CUDA, 0 on CPU; N > 1 runs the cell under torchrun; "
                        "Ray takes fractions: 0.5 packs two cells per GPU)")
    x.add_argument("--cpus-per-cell", type=at_least(1), default=None,
                   help="CPUs each cell's job reserves (default: train.threads on CPU; on CUDA a quarter of this "
                        "machine's CPUs, which on a cluster may not be its nodes')")
    x.add_argument("--retries", type=at_least(0), default=2, help="resubmissions of a cell whose worker died [2]")
    x.add_argument("--slurm-partition", default=None, help="Slurm partition (--executor submitit)")
    x.add_argument("--slurm-time", type=at_least(1), default=24 * 60,
                   help="time limit per cell in minutes [1440]; a cell "
                   "that reaches it is requeued and continues from its checkpoint")
    x.add_argument("--submitit-cluster", default=None, choices=("slurm", "local", "debug"),
                   help="submitit's cluster (default: slurm where sbatch exists, else local processes)")
    x.add_argument("--ray-address", default=None, help="a running Ray cluster (default: start one on this machine)")
    x.add_argument("--connect-timeout", type=at_least(1, float), default=30.0,
                   help="seconds to wait for the Ray cluster or Slurm to answer before giving up [30]")
    x.add_argument("--stall-after", type=at_least(1, float), default=300.0,
                   help="seconds with cells queued and none running after which the driver says what it waits "
                        "for (and again every as many seconds) [300]")
    x.add_argument("--no-resource-check", action="store_true",
                   help="submit even when no node of the cluster has what a cell asks for (an autoscaler adds one)")
    tuning_arguments(p)
    return p


def tuning_arguments(p) -> None:
    """The ``--tune`` group (protocols/tuning.py reads it: ``spec_from_args``)."""
    g = p.add_argument_group("tuning studies", "an equal-budget study per model of the protocol (Lucic et al. "
                             "2018): selected on the validation split, confirmed with --seeds seeds on the test "
                             "split, the protocol's claims re-judged there (protocols/tuning.py)")
    g.add_argument("--tune", type=at_least(1), default=None, metavar="N", help="trials per model (the same for each)")
    g.add_argument("--criterion", default=None, help="fid | bpd | pareto (FID x BPD) [fid]")
    g.add_argument("--sampler", default=None, help="random (Lucic) | tpe | nsga2 [random]")
    g.add_argument("--prune", default=None, help="prune at the snapshots: none (a pure Lucic study) | median | "
                   "hyperband [none]")
    g.add_argument("--study-seed", type=at_least(0), default=None, help="the samplers' seed [0]")
    g.add_argument("--space", action="append", default=None, metavar="KNOB=LOW:HIGH",
                   help="narrow a knob for every model that has it (KNOB=A|B for choices, KNOB=off to keep its "
                        "preset); --dry-run lists the knobs")
    g.add_argument("--no-confirm", action="store_true", help="search and select only")


def executor_options(args):
    """The --executor group as ExecutorOptions (checked)."""
    from .executors import ExecutorOptions
    opts = ExecutorOptions(engine=args.executor, workers=args.workers, retries=args.retries,
                           gpus_per_cell=args.gpus_per_cell, cpus_per_cell=args.cpus_per_cell,
                           slurm_partition=args.slurm_partition,
                           slurm_time_min=args.slurm_time, submitit_cluster=args.submitit_cluster,
                           ray_address=args.ray_address, connect_timeout_s=args.connect_timeout,
                           stall_after_s=args.stall_after, check_resources=not args.no_resource_check).check()
    return opts


def list_registries() -> str:
    import metrics
    from models import MODELS

    from .api import PROTOCOLS
    from .datasets import dataset_names
    lines = ["models:"]
    lines += [f"  {n:<16} {MODELS.meta(n).get('description', '')}" for n in MODELS.names()]
    lines += ["protocols:"]
    lines += [f"  {n:<20} {PROTOCOLS.get(n).table:<10} {PROTOCOLS.get(n).description}" for n in PROTOCOLS.names()]
    lines += ["datasets:"] + [f"  {n}" for n in dataset_names()]
    lines += ["metrics:"] + [f"  {n}" for n in metrics.METRICS.names()]
    return "\n".join(lines)


def dry_run(args, overrides) -> str:
    """The plan as JSON: every cell's resolved config with each value's origin, its stages, and which
    models each --set reached.  Loads no data and writes nothing."""
    from .api import PROTOCOLS, plan
    from .config import provenance, stage_plan
    from .datasets import DATASETS
    p = PROTOCOLS.get(args.protocol)
    if not args.dataset.startswith("folder:"):
        DATASETS.get(args.dataset)  # unknown names fail here, without loading any data
    seeds = range(args.seed, args.seed + (args.seeds if args.seeds is not None else p.seeds))
    cfgs, reach = plan(args.protocol, args.model, seeds, dataset=args.dataset, budget=args.budget,
                       overrides=overrides, recipe=args.recipe)
    out = {"protocol": p.name, "table": p.table, "dataset": args.dataset, "budget": args.budget,
           "metrics": list(p.metrics), "claims": [c.text for c in p.claims],
           "overrides_reached": {k: v for k, v in reach.items()}, "cells": []}
    for cfg in cfgs:
        cell = {"model": cfg.model, "seed": cfg.seed, "config_hash": cfg.hash(), "config": cfg.to_dict(),
                "sources": {k: v["from"] for k, v in provenance(cfg).items()}}
        if cfg.model_cfg is not None:
            cell["stages"] = stage_plan(cfg)
        out["cells"].append(cell)
    return json.dumps(out, indent=2, default=str)


def format_table(res) -> str:
    """Plain-text table: one row per model (this run's configuration), mean ± std over seeds, then the claims."""
    from metrics.keys import direction
    metrics_ = sorted({k for v in res.table.values() for k in v})
    cells = {}
    for model in res.table:
        for m in metrics_:
            v = res.table[model].get(m)
            if v is None:
                cells[model, m] = "\u2014"
            else:
                sd = "" if v["std"] is None else f" \u00b1 {v['std']:.3g}"
                cells[model, m] = f"{v['mean']:.4g}{sd}"
    heads = {m: m + {"higher": " \u2191", "lower": " \u2193"}.get(direction(m), "") for m in metrics_}
    width = {m: max([len(heads[m])] + [len(cells[k, m]) for k in res.table]) + 2 for m in metrics_}
    mw = max([5] + [len(k) for k in res.table]) + 2
    seeds = {model: max((v["n"] for v in res.table[model].values()), default=0) for model in res.table}
    rows = [f"{'model':<{mw}}{'config':>14}{'seeds':>6}" + "".join(f"{heads[m]:>{width[m]}}" for m in metrics_)]
    for model in sorted(res.table):
        rows.append(f"{model:<{mw}}{res.configs.get(model, ''):>14}{seeds[model]:>6}"
                    + "".join(f"{cells[model, m]:>{width[m]}}" for m in metrics_))
    for c in res.claims:
        rows.append(f"claim [{c['status']}] {c['text']}")
    return "\n".join(rows)


def _build_page(results: Path, site: Path) -> Optional[Path]:
    """The CLI's last step: rebuild the leaderboard from the store (a failure warns; results are stored)."""
    from leaderboard.build import build
    try:
        return build(results, site)
    except Exception as e:  # noqa: BLE001  results are stored; the page can be rebuilt later
        print(f"warning: leaderboard not rebuilt ({type(e).__name__}: {e}); results are in {results}; "
              f"fix and run python -m leaderboard.build --results {results} --site {site}", file=sys.stderr,
              flush=True)
        return None


#: OpenMP's idle threads spin 1,000 iterations, not libgomp's default 300,000, before they sleep (set before torch
#: loads, and only when neither OMP_WAIT_POLICY nor GOMP_SPINCOUNT is set: an explicit choice wins). Two runs
#: that each use every core then share the CPUs (2.3x the time of one run for two, against 13x with libgomp's
#: default spinning), and a run alone loses far less than with OMP_WAIT_POLICY=PASSIVE (which never spins: +10%
#: per step on tiny tensors, +15-40% at the Fashion-MNIST presets under bf16). benchmarks/README.md. It changes
#: no result. (GOMP_SPINCOUNT is libgomp's, the OpenMP of PyTorch's Linux wheels.)
OMP_DEFAULTS = {"GOMP_SPINCOUNT": "1000"}
OMP_CHOICES = ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")


def main(argv: Optional[List[str]] = None) -> int:
    args = parser().parse_args(argv)
    if args.resume and args.fresh:
        parser().error("--resume continues a cell's training from its checkpoint and --fresh retrains it from "
                       "scratch: pass one of them")
    if "torch" not in sys.modules and not any(k in os.environ for k in OMP_CHOICES):
        os.environ.update(OMP_DEFAULTS)
    return run_main(lambda: _main(args), debug=args.debug,
                    interrupted="interrupted: finished cells are in the store; rerun to continue (add --resume "
                                "to continue the interrupted cell from its last checkpoint)")


def _main(args) -> int:
    from .config import parse_overrides
    overrides = parse_overrides(args.overrides)
    if args.inception_weights:
        from .config import Override
        overrides = [o for o in overrides if o.text != "eval.inception_weights"]
        overrides.append(Override.of("eval.inception_weights", args.inception_weights))
    if args.list:
        from .sizes import budget_table
        print(list_registries() + "\n" + budget_table(args.budget, args.dataset, args.model, args.recipe, overrides))
        return EXIT_OK
    executor = executor_options(args)
    from .tuning import spec_from_args
    study = spec_from_args(args, overrides)
    if study is not None:
        return _tune(args, study, executor)
    if args.dry_run:
        print(dry_run(args, overrides))
        return EXIT_OK
    from . import distributed as D
    from .api import default_results, default_site, run_protocol
    res = run_protocol(args.protocol, models=args.model, dataset=args.dataset, budget=args.budget, seed=args.seed,
                       seeds=args.seeds, data_root=args.data_root, download=args.download, results=args.results,
                       out=args.out, overrides=overrides, resume=args.resume, fresh=args.fresh,
                       progress=not args.no_progress, debug=args.debug, executor=executor, recipe=args.recipe)
    if not D.is_main():
        return EXIT_OK
    page = None if args.no_leaderboard else _build_page(res.store_path or default_results(),
                                                         args.site or default_site())
    print(json.dumps(res.table, indent=2) if args.json else format_table(res))
    if page is not None:
        print(f"leaderboard: {Path(page).resolve()}")
    failed = [c for c in res.cells if c.status == "failed"]
    if failed:
        print(f"{len(failed)} cell(s) failed: " + "; ".join(f"{c.model}/s{c.seed}: {c.error}" for c in failed),
              file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _tune(args, spec, executor) -> int:
    """``--tune N``: a study per model, its selection, the confirmation (protocols/tuning.py)."""
    from . import tuning
    from .api import default_results, default_site
    if args.dry_run:
        print(tuning.dry_run(spec, executor))
        return EXIT_OK
    res = tuning.run_study(spec, executor=executor, data_root=args.data_root, download=args.download,
                           results=args.results, out=args.out, progress=not args.no_progress, debug=args.debug,
                           confirm=not args.no_confirm)
    page = None if args.no_leaderboard else _build_page(args.results or default_results(), args.site or default_site())
    print(tuning.summary(res))
    if res.confirmation is not None:
        print(json.dumps(res.confirmation.table, indent=2) if args.json else format_table(res.confirmation))
    if page is not None:
        print(f"leaderboard: {Path(page).resolve()}")
    failed = [c for c in (res.confirmation.cells if res.confirmation is not None else []) if c.status == "failed"]
    if failed or len(res.selected) < len(res.plan.models):
        print(f"{len(failed)} confirmation cell(s) failed; {len(res.plan.models) - len(res.selected)} model(s) "
              f"without a complete trial", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
