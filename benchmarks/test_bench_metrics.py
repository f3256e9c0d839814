"""Speed of the evaluation suite against the reference tools run separately (pytest-benchmark).

    python -m pytest benchmarks/test_bench_metrics.py -p no:cacheprovider --benchmark-enable -s \
        [--benchmark-json=bench.json]     # $AVADE_BENCH_N, _FID_N, _ROUNDS, _THREADS (benchmarks/conftest.py)

Each test times both routes in one process, interleaved round by round ($AVADE_BENCH_ROUNDS, default 1),
and reports the median ratio over rounds (printed, and stored in ``benchmark.extra_info``).  The targets
are not asserted: a shared CPU makes absolute times, and to a lesser degree ratios, noisy.

1. ``test_sample_metrics_vs_reference_tools[64-d|2048-d]``: all five sample metrics (FID, KID, IS, PRD,
   prdc) from one pair of feature sets (``metrics.api.compute_metrics``) against clean-fid's FID
   (``fid_from_feats``) and KID (``kernel_distance``), ``prdc.compute_prdc`` (k=5) and the PRD reference
   procedure (prd_score.py: 10 runs of ``MiniBatchKMeans(20, n_init=10)``, copied below: the repository
   is not installable), each run separately on the same features; n vs n (default 10k).  64-d: features
   of the domain extractor on digits-like images; 2048-d: Inception-like synthetic features (non-negative,
   correlated).  Target: ratio <= 0.5.
2. ``test_fid_end_to_end_50k_2048``: feature statistics + Frechet distance of 50k vs 50k 2048-d features,
   ours (``metrics.fid.compute_fid``) against clean-fid's (``np.mean`` / ``np.cov`` + ``frechet_distance``
   with ``scipy.linalg.sqrtm``); also the Frechet distance alone on the same statistics.  Targets: >= 5x
   faster, equal to 1e-6 relative.
3. ``test_evaluate_images_vs_tools_embedding_separately``: from images, ``metrics.api.evaluate`` (features
   computed once, five metrics) against each tool embedding both sets itself (clean-fid FID, prdc, PRD).
"""
from __future__ import annotations

import contextlib
import io
import os
import statistics
import warnings
from typing import Callable, Dict, List

import numpy as np
import pytest
import torch

from speed_utils import interleaved, load_line, median_ratio as _median_ratio, timed


def bench_env(name: str, default: int) -> int:
    """A positive integer setting from $AVADE_BENCH_<NAME> (as benchmarks/conftest.py reads THREADS)."""
    value = os.environ.get(f"AVADE_BENCH_{name}", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else default


N = bench_env("N", 10000)
FID_N = bench_env("FID_N", 50000)
ROUNDS = bench_env("ROUNDS", 1)
LEVELS = 17


def _interleaved(routes: Dict[str, Callable[[], object]]) -> Dict[str, List[float]]:
    """Seconds of every route, run in turn, for ROUNDS rounds."""
    return interleaved({k: (lambda fn=fn: timed(fn)) for k, fn in routes.items()}, ROUNDS)


def _load() -> str:
    return load_line().removeprefix("load ")


def _report(benchmark, title: str, info: dict) -> None:
    benchmark.extra_info.update(info)
    print(f"\n{title}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()))


# ---- the reference PRD procedure ----------------------------------------------------------------------------
def reference_prd(eval_data, ref_data, num_clusters: int = 20, num_angles: int = 1001, num_runs: int = 10):
    """``compute_prd_from_embedding`` of msmsajjadi/precision-recall-distributions (prd_score.py), unseeded,
    with its ``_cluster_into_bins`` (histograms of MiniBatchKMeans(n_clusters, n_init=10) labels)."""
    from sklearn.cluster import MiniBatchKMeans

    from metrics.prd import compute_prd

    eval_data, ref_data = np.array(eval_data, dtype=np.float64), np.array(ref_data, dtype=np.float64)
    precisions, recalls = [], []
    for _ in range(num_runs):
        labels = MiniBatchKMeans(n_clusters=num_clusters, n_init=10).fit(np.vstack([eval_data, ref_data])).labels_
        bins = [np.histogram(part, bins=num_clusters, range=[0, num_clusters], density=True)[0]
                for part in (labels[:len(eval_data)], labels[len(eval_data):])]
        precision, recall = compute_prd(bins[0], bins[1], num_angles)
        precisions.append(precision)
        recalls.append(recall)
    return np.mean(precisions, axis=0), np.mean(recalls, axis=0)


def separate_tools(fake: np.ndarray, real: np.ndarray) -> Dict[str, Callable[[], object]]:
    """The reference route: each tool on the same features, one after the other."""
    import prdc
    from cleanfid.fid import fid_from_feats, kernel_distance

    def prdc_quiet():
        with contextlib.redirect_stdout(io.StringIO()):       # prdc prints the set sizes
            return prdc.compute_prdc(real, fake, 5)
    return {"cleanfid_fid": lambda: fid_from_feats(fake, real), "cleanfid_kid": lambda: kernel_distance(fake, real),
            "prdc_package": prdc_quiet, "reference_prd": lambda: reference_prd(fake, real)}


# ---- data ---------------------------------------------------------------------------------------------------
def _digits(n: int, seed: int):
    """scikit-learn's digits (17 levels) resampled to n with +-1-level noise: the content does not matter."""
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.RandomState(seed)
    idx = rng.randint(0, len(d.images), n)
    x = np.clip(d.images[idx] + rng.randint(-1, 2, (n, 8, 8)), 0, 16).astype(np.uint8)[:, None]
    return torch.from_numpy(x), torch.from_numpy(d.target[idx])


@pytest.fixture(scope="module")
def digits_setup():
    """(domain extractor, fake images, real images, fake Features, real Features): n vs n digits-like."""
    from metrics.features import DomainExtractor, embed_images

    torch.set_num_threads(bench_env("THREADS", 1))
    ext = DomainExtractor.fit_or_load(*_digits(1257, 0), LEVELS, seed=0, cache_dir=None)
    fake, real = _digits(N, 2)[0], _digits(N, 1)[0]
    return ext, fake, real, embed_images(ext, fake, LEVELS), embed_images(ext, real, LEVELS)


def inception_like(n: int, dims: int, seed: int, shift: float = 0.0) -> np.ndarray:
    """Non-negative, correlated float32 features (as Inception's pool3): ReLU of a fixed random mixing."""
    mix = np.random.RandomState(1234).randn(dims, dims).astype(np.float32) / np.sqrt(dims)
    z = np.random.RandomState(seed).randn(n, dims).astype(np.float32)
    return np.maximum(z @ mix + 0.3 + shift, 0).astype(np.float32)


# ---- 1. five sample metrics vs the tools run separately -----------------------------------------------------
@pytest.mark.parametrize("dims", [64, 2048], ids=["64-d", "2048-d"])
def test_sample_metrics_vs_reference_tools(benchmark, bench_threads, request, dims):
    from metrics.api import compute_metrics
    from metrics.features import Features

    if dims == 64:
        fake, real = request.getfixturevalue("digits_setup")[3:]
    else:
        logits = np.random.RandomState(5).randn(N, 1008)
        fake = Features(inception_like(N, dims, 2, shift=0.05), logits, "inception-like")
        real = Features(inception_like(N, dims, 1), logits, "inception-like")
    routes = {"ours_all_five": lambda: compute_metrics(fake, real, ("fid", "kid", "is", "prd", "prdc")),
              **separate_tools(fake.features, real.features)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")                    # scipy's sqrtm(disp=...) deprecation, k-means notices
        times = benchmark.pedantic(lambda: _interleaved(routes), rounds=1, iterations=1)
    separate = [sum(ts) for ts in zip(*(times[k] for k in routes if k != "ours_all_five"))]
    info = {"n": N, "dims": dims, "threads": bench_threads, "rounds": ROUNDS, "load": _load(),
            "ratio_ours_over_separate": _median_ratio(times["ours_all_five"], separate),
            "ours_s": statistics.median(times["ours_all_five"]), "separate_s": statistics.median(separate),
            **{f"{k}_s": statistics.median(v) for k, v in times.items() if k != "ours_all_five"}}
    _report(benchmark, f"five sample metrics, {dims}-d (target ratio <= 0.5)", info)


# ---- 2. FID end to end --------------------------------------------------------------------------------------
def test_fid_end_to_end_50k_2048(benchmark, bench_threads):
    from cleanfid.fid import frechet_distance as cleanfid_frechet

    from metrics.fid import compute_fid, feature_statistics, frechet_distance

    fake, real = inception_like(FID_N, 2048, 2, shift=0.05), inception_like(FID_N, 2048, 1)

    def cleanfid_fid():
        stats = [(np.mean(f, axis=0), np.cov(f, rowvar=False)) for f in (fake, real)]
        return float(cleanfid_frechet(*stats[0], *stats[1]))
    values = {}
    routes = {"ours": lambda: values.__setitem__("ours", compute_fid(fake, real)),
              "cleanfid": lambda: values.__setitem__("cleanfid", cleanfid_fid())}
    stats = (*feature_statistics(fake), *feature_statistics(real))
    frechet = {"ours_frechet": lambda: frechet_distance(*stats), "cleanfid_frechet": lambda: cleanfid_frechet(*stats)}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times = benchmark.pedantic(lambda: _interleaved({**routes, **frechet}), rounds=1, iterations=1)
    info = {"n": FID_N, "dims": 2048, "threads": bench_threads, "rounds": ROUNDS, "load": _load(),
            "speedup_cleanfid_over_ours": _median_ratio(times["cleanfid"], times["ours"]),
            "ours_s": statistics.median(times["ours"]), "cleanfid_s": statistics.median(times["cleanfid"]),
            "relative_difference": abs(values["ours"] - values["cleanfid"]) / abs(values["cleanfid"]),
            "fid": values["ours"],
            "frechet_only_speedup": _median_ratio(times["cleanfid_frechet"], times["ours_frechet"])}
    _report(benchmark, "FID end to end, 50k x 2048 (targets: speedup >= 5, relative difference <= 1e-6)", info)


# ---- 3. from images: features once vs every tool embedding both sets ----------------------------------------
def test_evaluate_images_vs_tools_embedding_separately(benchmark, bench_threads, digits_setup):
    from metrics.api import evaluate
    from metrics.features import embed_images

    ext, fake, real = digits_setup[:3]

    def embedded(tool: str) -> Callable[[], object]:
        def run():
            f, r = embed_images(ext, fake, LEVELS).features, embed_images(ext, real, LEVELS).features
            return separate_tools(f, r)[tool]()
        return run
    routes = {"ours_all_five": lambda: evaluate(fake, real, levels=LEVELS, extractor=ext),
              **{k: embedded(k) for k in ("cleanfid_fid", "prdc_package", "reference_prd")}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times = benchmark.pedantic(lambda: _interleaved(routes), rounds=1, iterations=1)
    separate = [sum(ts) for ts in zip(*(times[k] for k in routes if k != "ours_all_five"))]
    info = {"n": N, "threads": bench_threads, "rounds": ROUNDS, "load": _load(),
            "ratio_ours_five_over_separate_three": _median_ratio(times["ours_all_five"], separate),
            "ours_s": statistics.median(times["ours_all_five"]), "separate_s": statistics.median(separate)}
    _report(benchmark, "from digits images: evaluate (5 metrics) vs FID + prdc + PRD each embedding", info)
