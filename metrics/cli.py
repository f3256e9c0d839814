"""``python -m metrics``: sample-quality metrics of two image sets (a thin shell over metrics.api).

Examples::

    python -m metrics --fake samples/ --real real.npz --inception-weights pt_inception-2015-12-05-6726825d.pth --json
    python -m metrics --fake fake.npz --real test.npz --levels 17 --extractor domain --train train.npz \
        --metrics fid,kid,is,prd,prdc --cache-dir .cache/metrics --out-dir out/ --json
    python -m metrics --fake fake.npz --real test.npz --levels 17 --extractor domain --train train.npz \
        --metrics prd,prdc --prd-clusters 10 --prd-runs 5 --prdc-k 3

--fake/--real: a folder of image files or an .npz (images under ``x``; see metrics/images.py).
The domain extractor is trained on labelled real data: ``--train NPZ`` with arrays ``x`` and ``y``
(and optionally ``--heldout NPZ`` to record its accuracy).  Dataset names are not accepted here:
metrics imports nothing from protocols (``python -m protocols.run`` evaluates registered datasets).
Errors go through ``common.cli.run_main``: bad input prints one line and exits with code 2, a bug one line
and code 1 (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import json
from typing import Optional, Sequence

from common.cli import run_main

from .api import DEFAULT_METRICS, DEFAULT_PARAMS, evaluate_detailed
from .images import load_npz
from .registry import METRICS


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m metrics", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--fake", required=True, help="generated images: folder or .npz")
    p.add_argument("--real", required=True, help="reference images: folder or .npz")
    p.add_argument("--levels", type=int, default=256, help="intensity levels of the data (digits: 17)")
    p.add_argument("--extractor", choices=("inception", "domain"), default="inception")
    p.add_argument("--inception-weights", help="Inception weights file (default: $AVADE_INCEPTION)")
    p.add_argument("--train", help="labelled real train .npz (x, y) for --extractor domain")
    p.add_argument("--heldout", help="labelled real held-out .npz (x, y): the domain extractor's accuracy")
    p.add_argument("--metrics", default=",".join(DEFAULT_METRICS), help=f"comma list of {', '.join(METRICS.names())}")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--prd-clusters", type=int, help=f"PRD k-means clusters (default {DEFAULT_PARAMS['prd_clusters']})")
    p.add_argument("--prd-runs", type=int, help=f"PRD clusterings averaged (default {DEFAULT_PARAMS['prd_runs']})")
    p.add_argument("--prdc-k", type=int, help=f"prdc nearest neighbours (default {DEFAULT_PARAMS['prdc_k']})")
    p.add_argument("--cache-dir", help="feature / extractor cache folder (default: no cache)")
    p.add_argument("--out-dir", help="where to write prd.png and prd_curve.npz")
    p.add_argument("--device", help="torch device, e.g. cuda")
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _labelled(path: Optional[str], levels: int, flag: str):
    if path is None:
        return None
    x, y = load_npz(path, levels)
    if y is None:
        raise ValueError(f"{flag} {path} has no labels: store them under key 'y'")
    return x, y


def _params(args: argparse.Namespace) -> dict:
    """The metric parameters given on the command line (the others keep their defaults)."""
    return {name: getattr(args, name) for name in DEFAULT_PARAMS if getattr(args, name) is not None}


def run(args: argparse.Namespace) -> dict:
    result = evaluate_detailed(
        args.fake, args.real, levels=args.levels, extractor=args.extractor, seed=args.seed,
        metrics=[m.strip() for m in args.metrics.split(",") if m.strip()], cache_dir=args.cache_dir,
        inception_weights=args.inception_weights, train=_labelled(args.train, args.levels, "--train"),
        heldout=_labelled(args.heldout, args.levels, "--heldout"), device=args.device,
        batch_size=args.batch_size, out_dir=args.out_dir, params=_params(args))
    return {"values": result.values, "meta": result.meta}


def _body(args: argparse.Namespace) -> int:
    out = run(args)
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        for k, v in out["values"].items():
            print(f"{k}: {v:.6g}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    return run_main(lambda: _body(args), debug=args.debug)
