"""Budgets: the trainer and evaluation defaults of ``smoke`` (tests), ``cpu`` (a laptop) and ``paper`` (a GPU).

``BUDGETS[budget]`` holds dotted keys (``train.*`` / ``eval.*``).  How each model is sized and trained at a
budget is not here: it sits beside the model's registration (``register_model(..., presets=...)``,
:mod:`models.presets`).  The ``paper`` budget uses the registration defaults, the paper's CIFAR-10 sizes.
"""
from __future__ import annotations

from typing import Any, Dict

Layer = Dict[str, Any]

BUDGETS: Dict[str, Layer] = {
    # tests: seconds per cell
    "smoke": {"train.steps": 4, "train.batch_size": 8, "train.log_every": 2, "train.sample_every": 0,
              "train.ckpt_every": 0, "train.val_every": 0, "eval.n_samples": 200, "eval.bpd_images": 32, "eval.prd_runs": 2,
              "eval.prd_clusters": 5, "eval.batch_size": 100},
    # a laptop: Adamax beta1 0.5 instead of the paper's 0.9 (in the short digits runs it lowered the FID of every
    # adversarial model and left the MLE models unchanged; docs/results.md)
    # snapshots: 8 along the main stage (FID/KID of 2,000 samples, BPD of 500 test images), the claims along them
    "cpu": {"train.batch_size": 64, "train.beta1": 0.5, "train.log_every": 25, "train.sample_every": 0,
            "train.ckpt_every": 200, "train.val_every": 100, "eval.n_samples": 5000, "eval.iw_k": 0,
            "eval.snapshots": 8},
    # the paper (Appendix C): batch 64, Adamax 2e-3, 50k samples, IW-100 BPD, Inception features; a GPU
    "paper": {"train.steps": 200000, "train.batch_size": 64, "train.log_every": 100, "train.sample_every": 5000,
              "train.ckpt_every": 5000, "train.val_every": 5000, "train.val_images": 5000,
              "eval.n_samples": 50000, "eval.iw_k": 100, "eval.extractor": "inception", "eval.gan_seeds": 3},
}
