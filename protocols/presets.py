"""Budgets and every model's presets: one table of data (read by :func:`protocols.config.resolve`).

``BUDGETS[budget]`` holds the trainer and evaluation defaults of a budget (dotted keys ``train.*`` /
``eval.*``).  ``PRESETS[name]`` holds how a model is sized and trained at each budget:

* plain keys are fields of the model's config (``width``), dotted keys are trainer / evaluation keys
  (``train.steps``);
* ``"base"`` names the entry it extends (entries that are not models, such as ``"ade"``, only serve
  as bases); a child's keys win over its base's;
* a budget may be refined per image resolution (``"cpu@32"``) or per dataset (``"cpu@fashion-mnist"``);
  the most specific entry wins: ``budget`` < ``budget@resolution`` < ``budget@dataset``.

What a model *is* (``gan-rd`` = the GAN with the residual discriminator) is not here: it is the model's
registration in ``models/`` (``MODELS.meta(name)["defaults"]``).  The ``paper`` budget uses those
defaults, which are the paper's CIFAR-10 sizes, with the paper's optimiser settings from ``BUDGETS``.

Numbers and the experiments behind them: models/README.md.
"""
from __future__ import annotations

from typing import Any, Dict

Layer = Dict[str, Any]

BUDGETS: Dict[str, Layer] = {
    # tests: seconds per cell
    "smoke": {"train.steps": 4, "train.batch_size": 8, "train.log_every": 2, "train.sample_every": 0,
              "train.ckpt_every": 0, "train.val_every": 0, "eval.n_samples": 200, "eval.bpd_images": 32, "eval.prd_runs": 2,
              "eval.prd_clusters": 5, "eval.batch_size": 100},
    # a laptop: Adamax beta1 0.5 instead of the paper's 0.9: in the short digits runs it lowered the domain FID
    # of every adversarial model (GAN 2000 steps 3.33 -> 1.32, AV-GDE 4.05 -> 2.41, AV-ADE 3.5 -> 2.32) and left
    # the MLE models unchanged (VAE 4.89 -> 5.14, BPD equal); see models/README.md.
    # snapshots: 8 along the main stage (FID/KID of 2,000 samples, BPD of 500 test images), the claims along them
    "cpu": {"train.batch_size": 64, "train.beta1": 0.5, "train.log_every": 25, "train.sample_every": 0,
            "train.ckpt_every": 200, "train.val_every": 100, "eval.n_samples": 5000, "eval.iw_k": 0,
            "eval.snapshots": 8},
    # the paper (Appendix C): batch 64, Adamax 2e-3, 50k samples, IW-100 BPD, Inception features; a GPU
    "paper": {"train.steps": 200000, "train.batch_size": 64, "train.log_every": 100, "train.sample_every": 5000,
              "train.ckpt_every": 5000, "train.val_every": 5000, "train.val_images": 5000,
              "eval.n_samples": 50000, "eval.iw_k": 100, "eval.extractor": "inception", "eval.gan_seeds": 3},
}

#: the digits cpu budget lowers the gradient penalty to 10: on 8x8 GP 100 kept every adversarial model's
#: discriminator at or above chance (models/README.md)
_CPU_GP = {"gp_weight": 10.0}

#: 32x32 (Fashion-MNIST) at the cpu budget: one rule for the five Table 1 models, the same training budget
#: of 1600 steps of batch 32 each (equal steps and images, ~0.93 epoch) with the digits widths (the same
#: generator for all).  Batch 32 x 1600 sees the images of 64 x 800 with twice the updates; over three seeds
#: every model's BPD fell or held, the FID of gan (15.7 -> 8.7, recognisable garments), vae and vade fell and
#: the two hybrids' rose (avgde 17.2 -> 22.5, avade 19.2 -> 21.3; their D far ahead), for 0.81-0.88x the img/s
#: of the hierarchical models.  The image count is set so that two seeds of the ablation with every metric fit
#: in an hour on 2 cores (57 min 40 s); channels-last convs
#: (1.0-1.2x per step at 1x32x32) and bf16 training losses where the CPU has native bf16 (1.5-1.8x per step;
#: test BPD and FID of a seed unchanged within the seed spread; evaluation stays fp32), benchmarks/README.md.
#: Without native bf16 the same steps run in fp32 (another config hash), ~1.6x longer.  models/README.md.
#: equal tuning: every adversarial model at 32x32 gets the same two time-scale rule (Heusel et al. 2017: G at a
#: quarter of D's rate); before, only the GAN had it
_TTUR = {"train.phase_lr": "gen=5e-4"}
_CPU32 = {"train.steps": 1600, "train.batch_size": 32, "train.channels_last": True, "train.autocast": "auto"}

PRESETS: Dict[str, Dict[str, Any]] = {
    # ---- the GAN family (models/ade.py: GAN) ----
    "gan": {"smoke": {"width": 4, "enc_width": 4, "disc_width": 4, "z_dim": 8, "infer_steps": 2},
            # the inference stage runs until its validation bound stops improving (3 checks of 100 steps), at
            # most train.steps: BPD then compares generators, not inference budgets
            "cpu": {"width": 32, "enc_width": 32, "disc_width": 32, "z_dim": 32, **_CPU_GP,
                    "train.steps": 2000, "infer_steps": 20000, "train.plateau_patience": 3},
            "cpu@32": {**_CPU32, **_TTUR}},
    # Table 6's residual D: half the paper's width (8) on 8x8 digits; at 32x32 the paper's 16, since width 8 died
    # (every ReLU off, GP exactly 1) in 3 of 5 500-step Fashion-MNIST runs and width 16 in none of 3, nor over
    # the full preset (gan-rd FID 28.2 -> 11.7, seed 0; models/README.md).  One rule: every rd model (gan-rd,
    # avade-rd and its children) takes this D.
    "gan-rd": {"base": "gan", "smoke": {"disc_width": 2}, "cpu": {"disc_width": 8}, "cpu@32": {"disc_width": 16}},
    "gan-cond": {"base": "gan"},
    # ---- the VAE family (models/ade.py: ADE); "ade" is a base, not a model ----
    "ade": {"smoke": {"width": 4, "enc_width": 4, "disc_width": 4, "z_dim": 8, "latent_ch": 4, "iaf_hidden": 8,
                      "flow_mid": 8, "flow_blocks": 1},
            "cpu": {"width": 32, "enc_width": 32, "disc_width": 32, "z_dim": 32, "latent_ch": 8,
                    "iaf_hidden": 16, "flow_mid": 16, "flow_blocks": 2}},
    "vae": {"base": "ade", "cpu": {"train.steps": 2000}, "cpu@32": dict(_CPU32)},
    "vade": {"base": "ade", "cpu": {"train.steps": 600}, "cpu@32": dict(_CPU32)},
    "avgde": {"base": "ade", "cpu": {**_CPU_GP, "train.steps": 600}, "cpu@32": {**_CPU32, **_TTUR}},
    "avade": {"base": "ade", "cpu": {**_CPU_GP, "train.steps": 400}, "cpu@32": {**_CPU32, **_TTUR}},
    "avade-rd": {"base": "avade", "smoke": {"disc_width": 2}, "cpu": {"disc_width": 8}, "cpu@32": {"disc_width": 16}},
    "avade-iaf-rd": {"base": "avade-rd"},
    "avade-wg-rd": {"base": "avade-rd", "smoke": {"width": 8}, "cpu": {"width": 64}},   # 2x decoder channels
    "avade-s2": {"base": "avade"},
    "avade-cond": {"base": "avade"},
    # ---- fully invertible flows (models/flow_models.py) ----
    "realnvp": {"smoke": {"scales": 2, "blocks": 1, "mid": 8, "couplings": 2, "final_couplings": 2},
                "cpu": {"scales": 2, "blocks": 2, "mid": 32, "couplings": 3, "final_couplings": 4,
                        "train.steps": 300, "train.grad_clip": 100.0},
                "paper": {"train.grad_clip": 100.0}},
    "glow": {"smoke": {"levels": 2, "depth": 2, "hidden": 8},
             "cpu": {"levels": 2, "depth": 8, "hidden": 64, "train.steps": 600, "train.grad_clip": 100.0},
             "paper": {"train.grad_clip": 100.0}},
    "flowgan": {"base": "realnvp", "smoke": {"disc_width": 8}, "cpu": {"disc_width": 32, "train.steps": 100}},
    # ---- diffusion (models/vdm.py): Adam as VDM; cpu = a small U-Net on digits (1000 steps, ~2-3 min), halved
    # at 32x32; paper = VDM's CIFAR-10 optimiser at 200k steps (VDM: 10M steps with EMA), one bound sample ----
    "vdm": {"smoke": {"ch": 8, "blocks": 1, "ch_mult": (1, 2), "attn_mid": True, "dropout": 0.0,
                      "schedule_features": 16, "sample_steps": 4},
            "cpu": {"ch": 32, "blocks": 1, "ch_mult": (1, 2, 2), "attn_mid": True, "dropout": 0.0,
                    "sample_steps": 100, "nll_samples": 4, "train.steps": 1000, "train.optimizer": "adam",
                    "train.lr": 2e-3, "train.beta1": 0.9, "train.beta2": 0.99, "train.grad_clip": 1.0},
            "cpu@32": {"ch": 16, "nll_samples": 1},
            "paper": {"train.optimizer": "adam", "train.lr": 2e-4, "train.beta1": 0.9, "train.beta2": 0.99,
                      "train.batch_size": 128, "train.steps": 200000, "train.grad_clip": 0.0, "eval.iw_k": 0}},
}

# Table 9 names fix their own f_psi size (scales, blocks); the budgets keep it (smoke and cpu shrink only widths)
for _s, _b in ((1, 2), (2, 2), (2, 4), (3, 3)):
    PRESETS[f"avade-s{_s}b{_b}"] = {"base": "avade", "smoke": {"flow_blocks": _b}, "cpu": {"flow_blocks": _b}}
for _s, _b in ((1, 2), (2, 2), (3, 2), (4, 1)):
    PRESETS[f"vade-s{_s}b{_b}"] = {"base": "vade", "smoke": {"flow_blocks": _b}, "cpu": {"flow_blocks": _b}}


def chain(name: str) -> list:
    """``name`` and its bases, most general first (e.g. ["ade", "avade", "avade-rd"])."""
    out, seen = [], set()
    while name in PRESETS and name not in seen:
        seen.add(name)
        out.append(name)
        name = PRESETS[name].get("base", "")
    return out[::-1]


def qualifiers(budget: str, resolution: int, dataset: str) -> list:
    """The budget keys that apply, most general first."""
    return [budget, f"{budget}@{resolution}", f"{budget}@{dataset}"]
