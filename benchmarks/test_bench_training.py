"""Training cost of every Table 1 model: FLOPs per step, achieved FLOP/s, fraction of an fp32 matmul peak.

Two settings (``speed_utils.SETTINGS``): 1x32x32 at the ``cpu`` presets (Fashion-MNIST's shape) and 3x32x32
at the paper's widths (CIFAR-10's), batch 64, random uint8 data, through the one trainer
(``protocols.trainer.Trainer``: every phase's losses, backward, clipping and optimiser step).

* FLOPs per step: one trainer step under :class:`speed_utils.FlopCounter` (FlopCounterMode's formulas,
  without its module tracker, which fails inside the gradient penalty's ``torch.autograd.grad``); the
  penalty's forward, its first-order gradient and the double backward are all counted.
* Speed: NCHW and channels-last (``train.channels_last``) trainers of the same model, and an fp32 matmul
  (the "peak"), interleaved round by round; where the CPU has native bf16 (``protocols.config.native_bf16``),
  also a channels-last trainer under ``train.autocast=bf16`` against a bf16 matmul; fraction of peak = median over rounds of
  (FLOPs per step / step time) / (matmul FLOP/s of that round).  That fraction is split into the
  FLOP-carrying (conv / matmul) kernels' own fraction (FLOPs / time inside them, timed by the counter in a
  channels-last step of each round) and their share of the channels-last step's time: the product of the two
  is the whole step's fraction, so a low figure says whether the kernels or the work between them (elementwise
  ops, normalisation, the optimiser) hold it down.  Nothing is asserted: each test prints its
  numbers and stores them in ``benchmark.extra_info``.

    python -m pytest benchmarks/test_bench_training.py -p no:cacheprovider --benchmark-enable -s
    AVADE_BENCH_THREADS=2 AVADE_BENCH_ROUNDS=5 python -m pytest benchmarks -k "training and avade" ...
"""
from __future__ import annotations

import os

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode

from protocols.config import native_bf16

from speed_utils import (SETTINGS, TABLE1, build_trainer, interleaved, load_line, matmul_peak, median,
                         median_ratio, step_flops, timed, train_step)

ROUNDS = int(os.environ.get("AVADE_BENCH_ROUNDS", "3"))
#: train.autocast=bf16 is measured where the CPU has native bf16 (emulated bf16 is slower than fp32)
BF16 = native_bf16("cpu")


def test_flop_counter_matches_flop_counter_mode_without_autograd_grad(tmp_path, bench_threads):
    """On a step with no gradient penalty (the VAE) the counter gives FlopCounterMode's exact total."""
    tr = build_trainer("vae", "1x32 cpu", tmp_path, batch_size=8)
    train_step(tr)
    ours = step_flops(tr).flops
    with FlopCounterMode(display=False) as ref:
        train_step(tr)
    assert ours == ref.get_total_flops() > 0


@pytest.mark.parametrize("setting", list(SETTINGS))
@pytest.mark.parametrize("name", TABLE1)
def test_training_flops_and_fraction_of_peak(benchmark, name, setting, tmp_path, bench_threads):
    load_before = load_line()
    fp32 = {"train.autocast": "off"}
    trainers = {"nchw": build_trainer(name, setting, tmp_path / "nchw", overrides=fp32),
                "channels_last": build_trainer(name, setting, tmp_path / "cl", channels_last=True, overrides=fp32)}
    counts = {k: step_flops(tr) for k, tr in trainers.items()}       # also the warm-up step
    flops = counts["nchw"].flops
    assert counts["channels_last"].flops == flops                    # the layout changes no FLOP
    if BF16:   # the same step under train.autocast=bf16 (channels-last): its FLOPs are the fp32 step's
        trainers["bf16"] = build_trainer(name, setting, tmp_path / "bf16", channels_last=True,
                                         overrides={"train.autocast": "bf16"})
    for tr in trainers.values():
        train_step(tr)
    fns = {"peak": matmul_peak, **({"peak_bf16": lambda: matmul_peak(dtype=torch.bfloat16)} if BF16 else {}),
           **{k: (lambda tr=tr: timed(lambda: train_step(tr))) for k, tr in trainers.items()},
           "kernels": lambda: step_flops(trainers["channels_last"]).seconds}
    times = interleaved(fns, ROUNDS)
    benchmark.pedantic(lambda: train_step(trainers["nchw"]), rounds=1, iterations=1)   # the plugin's row

    batch = trainers["nchw"].tc.batch_size
    info = {"model": name, "setting": setting, "threads": bench_threads, "rounds": len(times["nchw"]),
            "flops_per_step": flops, "gflop_per_image": flops / batch / 1e9,
            "flops_by_op": counts["nchw"].by_op, "peak_gflops": median(times["peak"]) / 1e9,
            "load_before": load_before, "load_after": load_line()}
    for k in trainers:
        info[f"{k}_img_per_s"] = batch / median(times[k])
        info[f"{k}_gflops"] = flops / median(times[k]) / 1e9
        info[f"{k}_fraction_of_peak"] = median_ratio([flops / t for t in times[k]], times["peak"])
    info["channels_last_speedup"] = median_ratio(times["nchw"], times["channels_last"])
    # the whole step's fraction = (the FLOP-carrying kernels' own fraction) x (their share of the step's time)
    info["kernels_fraction_of_peak"] = median_ratio([flops / t for t in times["kernels"]], times["peak"])
    info["kernels_share_of_step"] = median_ratio(times["kernels"], times["channels_last"])
    bf16_line = ""
    if BF16:
        info["bf16_fraction_of_bf16_peak"] = median_ratio([flops / t for t in times["bf16"]], times["peak_bf16"])
        info["bf16_speedup"] = median_ratio(times["channels_last"], times["bf16"])
        info["peak_bf16_gflops"] = median(times["peak_bf16"]) / 1e9
        bf16_line = (f"; autocast bf16 {info['bf16_img_per_s']:.1f} img/s (x{info['bf16_speedup']:.2f} channels-last "
                     f"fp32) = {info['bf16_fraction_of_bf16_peak']:.2f} of a bf16 matmul's "
                     f"{info['peak_bf16_gflops']:.0f} GFLOP/s")
    benchmark.extra_info.update(info)
    print(f"\n{name:6s} {setting:10s} threads {bench_threads}: {flops / 1e9:7.1f} GFLOP/step "
          f"({info['gflop_per_image']:.2f}/image); peak {info['peak_gflops']:.0f} GFLOP/s; "
          f"NCHW {info['nchw_img_per_s']:.1f} img/s = {info['nchw_fraction_of_peak']:.2f} of peak; "
          f"channels-last {info['channels_last_img_per_s']:.1f} img/s = {info['channels_last_fraction_of_peak']:.2f}"
          f" (x{info['channels_last_speedup']:.2f}): conv/matmul kernels {info['kernels_fraction_of_peak']:.2f} of "
          f"peak for {info['kernels_share_of_step']:.0%} of the step{bf16_line}; {load_before} -> {info['load_after']}")


@pytest.mark.skipif(os.environ.get("AVADE_BENCH_COMPILE", "") != "1",
                    reason="minutes of compilation; set AVADE_BENCH_COMPILE=1 to measure torch.compile")
@pytest.mark.parametrize("name", ["vae", "vade", "avade"])
def test_torch_compile_of_the_generative_phase(benchmark, name, tmp_path, bench_threads):
    """torch.compile (inductor, CPU) of ``model.losses`` for the phases without a gradient penalty (its double
    backward cannot be compiled: aot_autograd rejects create_graph), at the cpu preset: the compile time
    (first step) and the steady-state speed ratio eager / compiled, interleaved."""
    import time

    eager = build_trainer(name, "1x32 cpu", tmp_path / "eager")
    compiled = build_trainer(name, "1x32 cpu", tmp_path / "compiled")
    model = compiled.model
    fast = torch.compile(model.losses)
    slow = model.losses
    model.losses = lambda phase, batch: (fast if phase in ("main", "gen") else slow)(phase, batch)
    train_step(eager)
    t = time.perf_counter()
    train_step(compiled)
    compile_s = time.perf_counter() - t
    train_step(compiled)
    times = interleaved({"eager": lambda: timed(lambda: train_step(eager)),
                         "compiled": lambda: timed(lambda: train_step(compiled))}, ROUNDS)
    benchmark.pedantic(lambda: train_step(compiled), rounds=1, iterations=1)
    info = {"model": name, "threads": bench_threads, "first_step_s (compile)": compile_s,
            "eager_step_s": median(times["eager"]), "compiled_step_s": median(times["compiled"]),
            "speedup": median_ratio(times["eager"], times["compiled"])}
    info["break_even_steps"] = (compile_s / max(info["eager_step_s"] - info["compiled_step_s"], 1e-9)
                                if info["speedup"] > 1 else float("inf"))
    benchmark.extra_info.update(info)
    print(f"\ntorch.compile {name} 1x32 cpu: first step {compile_s:.0f} s, eager {info['eager_step_s'] * 1e3:.0f} ms, "
          f"compiled {info['compiled_step_s'] * 1e3:.0f} ms (x{info['speedup']:.2f}), pays after "
          f"{info['break_even_steps']:.0f} steps")
