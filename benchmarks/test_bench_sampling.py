"""Sampling speed: samples/s of gan, avade, vade, realnvp, glow and flowgan, as ratios to the GAN in one run.

Two settings (``speed_utils.SETTINGS``): 3x32x32 at the paper's widths (Glow at the paper's depth: 3 levels of
32 steps, 512 hidden channels; Real-NVP / Flow-GAN at Dinh et al.'s CIFAR-10 size) and 1x32x32 at the ``cpu``
presets.  Batch 64 per call of ``model.sample``; the models are freshly initialised (speed does not depend
on the weights; Glow's ActNorm is initialised by one forward pass first).  Every model samples once per round,
round after round; each ratio is the median over rounds of the per-round ratio.

Targets of the speed issue (printed, not asserted): AV-ADE >= 0.7x the GAN's samples/s (the paper's
"~10 feed-forward layers") and >= 10x Glow's.  The AV-ADE cost is split into its two parts (the decoder's
top-down prior pass and f_psi^{-1}) and the FLOPs per sample of every model are counted, so a missed target
comes with where the time goes.

    python -m pytest benchmarks/test_bench_sampling.py -p no:cacheprovider --benchmark-enable -s
"""
from __future__ import annotations

import contextlib
import os

import pytest
import torch

from speed_utils import (SETTINGS, FlopCounter, interleaved, load_line, median, median_ratio, timed)

ROUNDS = int(os.environ.get("AVADE_BENCH_ROUNDS", "3"))
BATCH = 64
NAMES = ("gan", "avade", "vade", "realnvp", "glow", "flowgan")


def build(name: str, setting: str, channels_last: bool = False):
    from models import DataSpec, build_model
    from protocols.config import resolve

    budget, dataset, spec = SETTINGS[setting]
    spec = DataSpec(*spec)
    torch.manual_seed(0)
    model = build_model(name, resolve(name, budget=budget, dataset=dataset, machine=False).model_cfg, spec)
    if name == "glow":                      # data-dependent ActNorm init, as the first training step does
        with torch.no_grad():
            model.log_prob_u(torch.rand(BATCH, *spec.shape))
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    return model.eval()


@contextlib.contextmanager
def inference(model):
    """What ``sample`` runs under (``fast_inference``; eval mode + no_grad in the code before the speed work)."""
    from models import layers

    fast = getattr(layers, "fast_inference", None)
    with (fast(model) if fast else contextlib.ExitStack()) as stack:
        if fast is None:
            stack.enter_context(layers.eval_mode(model))
            stack.enter_context(torch.no_grad())
        yield


def avade_parts(model):
    """The two halves of an AV-ADE sample: the decoder's prior pass, and f_psi^{-1} + logit^{-1}."""
    def decoder():
        with inference(model):
            return model.vae.prior_mean(BATCH, None, model.device)

    feat = decoder()

    def inverse():
        with inference(model):
            return model._to_u(feat)
    return decoder, inverse


@pytest.mark.parametrize("setting", ["3x32 paper", "1x32 cpu"])
def test_sampling_speed_ratios(benchmark, setting, bench_threads):
    load_before = load_line()
    models = {n: build(n, setting) for n in NAMES}
    models["gan_channels_last"] = build("gan", setting, channels_last=True)
    models["avade_channels_last"] = build("avade", setting, channels_last=True)
    flops = {}
    for n, m in models.items():
        with FlopCounter() as fc:
            m.sample(BATCH)
        flops[n] = fc.flops / BATCH
    decoder, inverse = avade_parts(models["avade"])
    fns = {n: (lambda m=m: BATCH / timed(lambda: m.sample(BATCH))) for n, m in models.items()}
    fns["avade_decoder"] = lambda: timed(decoder)
    fns["avade_inverse"] = lambda: timed(inverse)
    rates = interleaved(fns, ROUNDS)
    benchmark.pedantic(lambda: models["avade"].sample(BATCH), rounds=1, iterations=1)   # the plugin's row

    info = {"setting": setting, "threads": bench_threads, "batch": BATCH, "rounds": len(rates["avade"]),
            "load_before": load_before, "load_after": load_line()}
    for n in models:
        info[f"{n}_samples_per_s"] = median(rates[n])
        info[f"{n}_mflop_per_sample"] = flops[n] / 1e6
        info[f"{n}_over_gan"] = median_ratio(rates[n], rates["gan"])
    info["avade_over_glow"] = median_ratio(rates["avade"], rates["glow"])
    dec, inv = median(rates["avade_decoder"]), median(rates["avade_inverse"])
    info["avade_decoder_share"] = dec / (dec + inv)
    info["avade_flops_over_gan_flops"] = flops["avade"] / flops["gan"]
    info["target_avade_over_gan_0.7_met"] = info["avade_over_gan"] >= 0.7
    info["target_avade_over_glow_10_met"] = info["avade_over_glow"] >= 10
    benchmark.extra_info.update(info)
    print(f"\n{setting}, threads {bench_threads}, batch {BATCH}, {info['rounds']} rounds; {load_before} -> {info['load_after']}")
    for n in models:
        print(f"  {n:20s} {info[f'{n}_samples_per_s']:8.1f} samples/s  x{info[f'{n}_over_gan']:.3f} of gan  "
              f"{info[f'{n}_mflop_per_sample']:8.1f} MFLOP/sample")
    print(f"  avade / glow x{info['avade_over_glow']:.1f} (target >= 10: {info['target_avade_over_glow_10_met']}); "
          f"avade / gan x{info['avade_over_gan']:.3f} (target >= 0.7: {info['target_avade_over_gan_0.7_met']}); "
          f"AV-ADE FLOPs = {info['avade_flops_over_gan_flops']:.2f}x the GAN's; decoder {100 * info['avade_decoder_share']:.0f}% "
          f"/ f_psi^-1 {100 * (1 - info['avade_decoder_share']):.0f}% of its time")
