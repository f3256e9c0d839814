"""Cost of issue 36's metrics and of the DINOv2 extractor on a CPU (pytest-benchmark).

    python -m pytest benchmarks/test_bench_modern_metrics.py -p no:cacheprovider --benchmark-enable -s
        # $AVADE_BENCH_N (default 10000), _ROUNDS, _THREADS (benchmarks/conftest.py), _DINO_N (default 256)

1. ``test_new_metrics_cost_vs_the_five[64-d|1024-d]``: Vendi, MMD, AuthPct, C_T and FLD (with the training set
   as large as the real set) from the same features as today's one-pass figure, ``compute_metrics`` of the
   five sample metrics (FID, KID, IS, PRD, prdc); n vs n vs n.  Reported: seconds of each and the ratio
   new / five, per metric too.  64-d: domain features on digits-like images; 1024-d: DINOv2 ViT-L-sized
   synthetic features.
2. ``test_dinov2_vits14_cpu_images_per_s``: a random-weight DINOv2 ViT-S/14 (the full 12 blocks; timing does
   not depend on the weights) on Fashion-MNIST-sized inputs (1 x 28 x 28, resized to 224 as for FD_DINOv2),
   batches of 64: images/s, preprocessing included, and the minutes for the 10,000 test images; beside it in
   the same rounds the domain extractor's images/s (the ratio is the figure that survives a busy CPU).
"""
from __future__ import annotations

import statistics
import warnings

import numpy as np
import pytest
import torch

from speed_utils import interleaved, load_line, median_ratio, timed
from test_bench_metrics import N, ROUNDS, bench_env, inception_like

NEW = ("vendi", "mmd", "authpct", "ct", "fld")
FIVE = ("fid", "kid", "is", "prd", "prdc")
DINO_N = bench_env("DINO_N", 256)


def _report(benchmark, title: str, info: dict) -> None:
    benchmark.extra_info.update(info)
    print(f"\n{title}: " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.items()))


@pytest.mark.parametrize("dims", [64, 1024], ids=["64-d", "1024-d"])
def test_new_metrics_cost_vs_the_five(benchmark, bench_threads, dims):
    from metrics.api import compute_metrics
    from metrics.features import Features

    logits = np.random.RandomState(5).randn(N, 10)
    fake, real, train = (Features(inception_like(N, dims, s, shift=0.05 * (s == 2)), logits, "x") for s in (2, 1, 3))
    routes = {"five": lambda: compute_metrics(fake, real, FIVE),
              **{m: (lambda m=m: compute_metrics(fake, real, (m,), train=train)) for m in NEW}}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        times = benchmark.pedantic(lambda: interleaved({k: (lambda f=f: timed(f)) for k, f in routes.items()},
                                                       ROUNDS), rounds=1, iterations=1)
    new = [sum(ts) for ts in zip(*(times[m] for m in NEW))]
    info = {"n": N, "dims": dims, "threads": bench_threads, "rounds": ROUNDS, "load": load_line(),
            "five_s": statistics.median(times["five"]), "new_s": statistics.median(new),
            "ratio_new_over_five": median_ratio(new, times["five"]),
            **{f"{m}_s": statistics.median(times[m]) for m in NEW}}
    _report(benchmark, f"issue-36 metrics vs the five, {dims}-d", info)


def test_dinov2_vits14_cpu_images_per_s(benchmark, bench_threads, tmp_path):
    import timm

    from metrics.features import DomainExtractor, Recipe
    from metrics.features.dinov2 import DINOv2Extractor

    net = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    torch.save({**net.state_dict(), "mask_token": torch.zeros(1, 384)}, tmp_path / "dinov2_vits14_random.pth")
    dino = DINOv2Extractor(tmp_path / "dinov2_vits14_random.pth")
    rng = np.random.RandomState(0)
    x = torch.from_numpy(rng.randint(0, 256, (DINO_N, 1, 28, 28)).astype(np.uint8)).float() / 255
    y = torch.from_numpy(np.arange(DINO_N) % 10)
    domain = DomainExtractor.fit_or_load((x * 255).to(torch.uint8), y, 256, seed=0, cache_dir=None, progress=False,
                                         recipe=Recipe(epochs=1, min_steps=1, max_steps=2))

    def embed_all(ext):
        for s in range(0, len(x), 64):
            ext.embed(x[s:s + 64])
    dino.embed(x[:8])
    times = benchmark.pedantic(lambda: interleaved({"dinov2": lambda: timed(lambda: embed_all(dino)),
                                                    "domain": lambda: timed(lambda: embed_all(domain))}, ROUNDS),
                               rounds=1, iterations=1)
    per_s = DINO_N / statistics.median(times["dinov2"])
    info = {"images": DINO_N, "threads": bench_threads, "rounds": ROUNDS, "load": load_line(),
            "dinov2_vits14_images_per_s": per_s, "fashion_mnist_test_minutes": 10000 / per_s / 60,
            "domain_images_per_s": DINO_N / statistics.median(times["domain"]),
            "ratio_dinov2_over_domain_time": median_ratio(times["dinov2"], times["domain"])}
    _report(benchmark, "DINOv2 ViT-S/14 on a CPU, 28x28 inputs", info)
