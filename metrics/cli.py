"""``python -m metrics``: sample-quality metrics of two image sets (a thin shell over metrics.api).

Examples::

    python -m metrics --fake samples/ --real real.npz --inception-weights pt_inception-2015-12-05-6726825d.pth --json
    python -m metrics --fake fake.npz --real test.npz --levels 17 --extractor domain --train train.npz \
        --metrics fid,kid,is,prd,prdc --cache-dir .cache/metrics --out-dir out/ --json
    python -m metrics --fake fake.npz --real test.npz --levels 17 --extractor domain --train train.npz \
        --metrics prd,prdc --prd-clusters 10 --prd-runs 5 --prdc-k 3
    python -m metrics --fake fake.npz --real test.npz --train train.npz --extractor dinov2 \
        --weights dinov2_vitl14_pretrain.pth --clip-weights ViT-L-14-336px.pt --json

Without ``--metrics``: fid, kid, is (extractors with logits), prd, prdc, vendi, mmd, and with ``--train`` the
memorization tests authpct, ct, fld; with ``--clip-weights``, CMMD too.  ``--extractor dinov2`` gives FD_DINOv2
(``fid`` in DINOv2 space) when ``--weights`` is Meta's published file; any other file (a random-weight one) is
reported as "random or unpublished weights" in the output, never as FD_DINOv2.

--fake/--real: a folder of image files or an .npz (images under ``x``; see metrics/images.py).
The domain extractor is trained on labelled real data: ``--train NPZ`` with arrays ``x`` and ``y``
(and optionally ``--heldout NPZ`` to record its accuracy); for the other extractors ``--train`` needs only
``x``.  Dataset names are not accepted here: metrics imports nothing from protocols
(``python -m protocols.run`` evaluates registered datasets).
Errors go through ``common.cli.run_main``: bad input prints one line and exits with code 2, a bug one line
and code 1 (``--debug`` shows the traceback).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Optional, Sequence

from common import defaults
from common.cli import Parser, at_least, run_main

from .api import DEFAULT_METRICS, DEFAULT_PARAMS, evaluate_detailed
from .images import load_npz
from .features.weights import unpublished_warning
from .registry import METRICS
from .suite import MEMORIZATION


def _parser() -> argparse.ArgumentParser:
    p = Parser(prog="python -m metrics", description=__doc__.split("\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("--fake", required=True, help="generated images: folder or .npz")
    p.add_argument("--real", required=True, help="reference images: folder or .npz")
    p.add_argument("--levels", type=at_least(2), default=256, help="intensity levels of the data (digits: 17)")
    p.add_argument("--extractor", choices=("inception", "domain", "selfsup", "dinov2", "clip"), default="inception")
    p.add_argument("--inception-weights", help=defaults.HELP["--inception-weights"])
    p.add_argument("--weights", help="weights file of --extractor dinov2 / clip (default: $AVADE_DINOV2 / $AVADE_CLIP)")
    p.add_argument("--clip-weights", help="CLIP ViT-L/14@336 file (OpenAI's ViT-L-14-336px.pt): adds CMMD")
    p.add_argument("--train", help="real training images .npz (x; y for --extractor domain): the memorization "
                                   "tests compare the samples with it")
    p.add_argument("--heldout", help="labelled real held-out .npz (x, y): the domain extractor's accuracy")
    p.add_argument("--metrics", help=f"comma list of {', '.join(METRICS.names())} (default: see below)")
    p.add_argument("--seed", type=at_least(0), default=0)
    p.add_argument("--prd-clusters", type=at_least(1),
                   help=f"PRD k-means clusters (default {DEFAULT_PARAMS['prd_clusters']})")
    p.add_argument("--prd-runs", type=at_least(1),
                   help=f"PRD clusterings averaged (default {DEFAULT_PARAMS['prd_runs']})")
    p.add_argument("--prdc-k", type=at_least(1), help=f"prdc nearest neighbours (default {DEFAULT_PARAMS['prdc_k']})")
    p.add_argument("--cache-dir", type=_folder, help="feature / extractor cache folder (default: no cache)")
    p.add_argument("--out-dir", type=_folder, help="where to write prd.png and prd_curve.npz")
    p.add_argument("--device", type=_device, help="torch device, e.g. cuda")
    p.add_argument("--batch-size", type=at_least(1), default=256, help="images per extractor batch [256]")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.add_argument("--debug", action="store_true", help="show tracebacks")
    return p


def _device(text: str) -> str:
    """A torch device of this machine (cpu, cuda, cuda:N), else argparse's one-line error."""
    import torch
    try:
        dev = torch.device(text)
    except RuntimeError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a torch device (use cpu, cuda or cuda:N)") from None
    if dev.type == "cuda" and (dev.index or 0) >= torch.cuda.device_count():
        raise argparse.ArgumentTypeError(f"{text}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return text


def _folder(text: str) -> str:
    """A folder this command may create or write into: not a file, nor under one (checked before any work)."""
    path = Path(text)
    for up in (path, *path.parents):
        if up.exists():
            if not up.is_dir():
                raise argparse.ArgumentTypeError(f"{up} is a file, not a folder; pass another path")
            break
    return text


def _labelled(path: Optional[str], levels: int, flag: str, need_labels: bool = True):
    if path is None:
        return None
    x, y = load_npz(path, levels)
    if y is None and need_labels:
        raise ValueError(f"{flag} {path} has no labels: store them under key 'y'")
    return x, y


def _params(args: argparse.Namespace) -> dict:
    """The metric parameters given on the command line (the others keep their defaults)."""
    return {name: getattr(args, name) for name in DEFAULT_PARAMS if getattr(args, name) is not None}


def _metrics(args: argparse.Namespace) -> list:
    """--metrics, or the default of the module docstring."""
    if args.metrics is not None:
        return [m.strip() for m in args.metrics.split(",") if m.strip()]
    names = [m for m in (*DEFAULT_METRICS, "vendi", "mmd") if m != "is" or args.extractor in ("inception", "domain")]
    return names + (list(MEMORIZATION) if args.train else [])


def run(args: argparse.Namespace) -> dict:
    result = evaluate_detailed(
        args.fake, args.real, levels=args.levels, extractor=args.extractor, seed=args.seed,
        metrics=_metrics(args), cache_dir=args.cache_dir,
        inception_weights=args.inception_weights,
        train=_labelled(args.train, args.levels, "--train", need_labels=args.extractor == "domain"),
        heldout=_labelled(args.heldout, args.levels, "--heldout"), device=args.device,
        batch_size=args.batch_size, out_dir=args.out_dir, params=_params(args), weights=args.weights,
        clip=args.clip_weights)
    out = {"values": result.values, "meta": result.meta}
    warnings = [w for w in (unpublished_warning(result.meta.get(k)) for k in ("extractor_identity", "cmmd_extractor"))
                if w]
    return {**out, "warnings": warnings} if warnings else out


def _body(args: argparse.Namespace) -> int:
    out = run(args)
    if args.json:
        print(json.dumps(out, sort_keys=True))
    else:
        for w in out.get("warnings", []):
            print(f"WARNING: {w}")
        for k, v in out["values"].items():
            print(f"{k}: {v:.6g}")
    return 0


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = _parser().parse_args(argv)
    return run_main(lambda: _body(args), debug=args.debug)
