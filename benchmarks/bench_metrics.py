"""Speed of the evaluation suite against running the reference tools separately (not a fast test).

    python benchmarks/bench_metrics.py [--n 10000] [--dims 2048] [--threads 1] [--json out.json]

1. All five feature metrics (fid, kid, is, prd, prdc), and the three the separate route covers
   (fid, prd, prdc), of n generated vs n real digits-like images with the domain extractor,
   features computed once (``metrics.api.evaluate``, no cache), against the separate route: each tool embeds both sets itself, then clean-fid's ``fid_from_feats``,
   ``prdc.compute_prdc`` (k=5) and a PRD computation (ours: the reference prd_score.py is not
   installable here, its algorithm is the same).
2. The Frechet distance alone at ``dims`` dimensions: ours (symmetric eigen-solves) against
   clean-fid's ``frechet_distance`` (scipy.linalg.sqrtm), with their relative difference.
The images are scikit-learn's digits (17 levels) resampled to n with +-1-level noise: the content
does not matter for timing.  ``--threads`` caps torch and BLAS/OpenMP threads (threadpoolctl): on a
shared, oversubscribed CPU, multi-threaded BLAS and small convolutions slow down 10-50x.
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import time
import warnings

import numpy as np
import torch


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def _digits(n: int, seed: int):
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.RandomState(seed)
    idx = rng.randint(0, len(d.images), n)
    x = np.clip(d.images[idx] + rng.randint(-1, 2, (n, 8, 8)), 0, 16).astype(np.uint8)[:, None]
    return torch.from_numpy(x), torch.from_numpy(d.target[idx])


def bench_suite(n: int) -> dict:
    from cleanfid.fid import fid_from_feats
    import prdc

    from metrics.api import evaluate
    from metrics.features import DomainExtractor, embed_images
    from metrics.prd import compute_prd_from_embedding

    train_x, train_y = _digits(1257, 0)
    ext, t_train = _timed(lambda: DomainExtractor.fit_or_load(train_x, train_y, 17, seed=0, cache_dir=None))
    real, fake = _digits(n, 1)[0], _digits(n, 2)[0]
    _, t_ours = _timed(lambda: evaluate(fake, real, levels=17, extractor=ext, seed=0))
    _, t_ours3 = _timed(lambda: evaluate(fake, real, levels=17, extractor=ext, seed=0, metrics=("fid", "prd", "prdc")))

    def embed_both():
        return embed_images(ext, fake, 17).features, embed_images(ext, real, 17).features
    (ff, fr), t_embed = _timed(embed_both)
    _, t_fid = _timed(lambda: (embed_both(), fid_from_feats(ff, fr)))
    with contextlib.redirect_stdout(io.StringIO()):
        _, t_prdc = _timed(lambda: (embed_both(), prdc.compute_prdc(fr, ff, 5)))
    _, t_prd = _timed(lambda: (embed_both(), compute_prd_from_embedding(ff, fr, seed=0)))
    separate = t_fid + t_prdc + t_prd
    return {"n": n, "domain_train_s": t_train, "ours_all_5_metrics_s": t_ours, "ours_fid_prd_prdc_s": t_ours3,
            "embed_both_sets_s": t_embed, "separate_cleanfid_fid_s": t_fid, "separate_prdc_s": t_prdc,
            "separate_prd_s": t_prd, "separate_fid_prd_prdc_total_s": separate,
            "ratio_separate_over_ours_same_3": separate / t_ours3, "ratio_separate_3_over_ours_all_5": separate / t_ours}


def bench_frechet(dims: int, n: int) -> dict:
    from cleanfid.fid import frechet_distance as cleanfid_frechet

    from metrics.fid import feature_statistics, frechet_distance

    rng = np.random.RandomState(0)
    mix = rng.randn(dims, dims) / np.sqrt(dims)
    s1 = feature_statistics(np.maximum(rng.randn(n, dims) @ mix, 0))
    s2 = feature_statistics(np.maximum(rng.randn(n, dims) @ mix + 0.05, 0))
    ours, t_ours = _timed(lambda: frechet_distance(*s1, *s2))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref, t_ref = _timed(lambda: cleanfid_frechet(*s1, *s2))
    return {"dims": dims, "n": n, "ours_s": t_ours, "cleanfid_sqrtm_s": t_ref, "ratio_cleanfid_over_ours": t_ref / t_ours,
            "fid_ours": ours, "fid_cleanfid": float(ref), "relative_difference": abs(ours - ref) / abs(ref)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--n", type=int, default=10000)
    p.add_argument("--dims", type=int, default=2048)
    p.add_argument("--threads", type=int, help="torch and BLAS threads (default: library defaults)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    from threadpoolctl import threadpool_limits

    if args.threads:
        torch.set_num_threads(args.threads)
    with threadpool_limits(limits=args.threads):
        out = {"torch_threads": torch.get_num_threads(), "suite": bench_suite(args.n),
               "frechet": bench_frechet(args.dims, 3000)}
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
