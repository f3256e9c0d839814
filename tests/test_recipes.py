"""Optimisation recipes (models/recipes.py): the paper's Appendix C as one named configuration, beside the presets.

Checks every value of ``--recipe paper`` against the paper's numbers with its source, that the recipe reaches only
the paper's models, that ``preset`` leaves every planned configuration as it was, and what the likelihood scaling
does to the balance of the two losses on the decoder (issue 33).
"""
from __future__ import annotations

import json
import math

import pytest
import torch

from models import build_model
from models.adversarial import g_loss
from models.base import Batch, DataSpec, dequantize
from models.recipes import RECIPES
from protocols.config import ConfigError, resolve
from protocols.api import plan
from protocols.run import main

#: Appendix C, word for word: "Adamax with learning rate 0.002, beta1 = 0.9, beta2 = 0.999 ... gradient penalty with
#: coefficient 100, and 1 discriminator update per generator update ... coefficient 100 [adversarial]"; Eq. 4 per image
APPENDIX_C = {"train.optimizer": "adamax", "train.lr": 0.002, "train.phase_lr": "", "train.beta1": 0.9,
              "train.beta2": 0.999, "train.disc_steps": 1, "model.gp_weight": 100.0}
AVADE_ONLY = {"model.adv_weight": 100.0, "model.lc_scale": "per_image"}


def _value(cfg, key):
    section, _, name = key.partition(".")
    return getattr({"train": cfg.train, "eval": cfg.eval, "model": cfg.model_cfg}[section], name)


@pytest.mark.parametrize("model", ["gan", "avade", "avgde"])
def test_paper_recipe_sets_appendix_c_with_its_source(model):
    cfg = resolve(model, dataset="fashion-mnist", budget="cpu", recipe="paper", machine=False)
    wanted = {**APPENDIX_C, **(AVADE_ONLY if model != "gan" else {})}
    for key, value in wanted.items():
        assert _value(cfg, key) == value, key
        assert cfg.sources[key] == "recipe paper (Appendix C)", key
    assert cfg.recipe == "paper"
    assert cfg.train.steps == 1600 and cfg.train.batch_size == 32      # sizes stay the budget's (presets)


def test_gp10_sibling_differs_only_in_the_penalty():
    a = resolve("avade", dataset="fashion-mnist", budget="cpu", recipe="paper", machine=False).hashed()
    b = resolve("avade", dataset="fashion-mnist", budget="cpu", recipe="paper-gp10", machine=False).hashed()
    assert b["model_cfg"]["gp_weight"] == 10.0
    b["model_cfg"]["gp_weight"] = 100.0
    assert a == b


def test_preset_recipe_is_the_presets_and_keeps_every_hash():
    for model in ("gan", "vae", "vade", "avgde", "avade"):
        for budget, data in (("cpu", "digits"), ("cpu", "fashion-mnist"), ("smoke", "digits")):
            plain = resolve(model, dataset=data, budget=budget, machine=False)
            named = resolve(model, dataset=data, budget=budget, recipe="preset", machine=False)
            assert plain.hash() == named.hash() and plain.recipe == named.recipe == "preset"
    cpu = resolve("avade", dataset="fashion-mnist", budget="cpu", machine=False)
    assert (cpu.train.phase_lr, cpu.train.beta1, cpu.model_cfg.gp_weight, cpu.model_cfg.lc_scale) == \
        ("gen=5e-4", 0.5, 10.0, "per_dim")                                 # as tuned here, unchanged


def test_paper_budget_defaults_to_the_paper_recipe_for_the_papers_models_only():
    avade = resolve("avade", dataset="cifar10", budget="paper", machine=False)
    assert avade.recipe == "paper" and avade.model_cfg.lc_scale == "per_image"
    vdm = resolve("vdm", dataset="cifar10", budget="paper", machine=False)
    assert vdm.recipe == "preset" and vdm.train.optimizer == "adam"     # its own published optimiser
    vdm2 = resolve("vdm", dataset="cifar10", budget="paper", recipe="paper", machine=False)
    assert vdm2.hash() == vdm.hash()                                     # the recipe does not reach it


def test_unknown_recipe_is_one_line(capsys):
    with pytest.raises(Exception, match="unknown recipe 'papr'; valid recipes: paper, paper-gp10, preset"):
        resolve("avade", recipe="papr", machine=False)
    assert main(["--protocol", "ablation", "--recipe", "papr", "--dry-run"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "valid recipes" in err[0]


def test_dry_run_names_every_appendix_c_value_and_its_source(capsys):
    assert main(["--protocol", "ablation", "--dataset", "fashion-mnist", "--model", "avade", "--model", "gan",
                 "--recipe", "paper", "--seeds", "1", "--dry-run"]) == 0
    out = json.loads(capsys.readouterr().out)
    cells = {c["model"]: c for c in out["cells"]}
    assert cells["real"]["config"]["recipe"] == ""                     # the real-data floor trains no model
    for model in ("avade", "gan"):
        c = cells[model]
        assert c["config"]["recipe"] == "paper"
        for key in {**APPENDIX_C, **(AVADE_ONLY if model == "avade" else {})}:
            assert c["sources"][key] == "recipe paper (Appendix C)"


def test_a_set_still_wins_over_the_recipe():
    cfgs, _ = plan("ablation", ["avade"], (0,), dataset="digits", budget="cpu", recipe="paper",
                   overrides={"model.gp_weight": "1"})
    assert cfgs[0].model_cfg.gp_weight == 1.0 and cfgs[0].sources["model.gp_weight"] == "--set model.gp_weight"


def test_recipes_are_registered_with_their_source():
    assert RECIPES.names() == ["paper", "paper-gp10", "preset"]
    assert RECIPES.meta("paper")["source"] == "Appendix C"


def _decoder_gradient_ratio(lc_scale: str) -> float:
    """|lambda grad L_Q| / |kappa grad L_C| on the decoder's weights (the only weights both losses reach), on one
    fixed batch of 1x32x32 images after 10 discriminator steps, at the smoke widths."""
    cfg = resolve("avade", dataset="fashion-mnist", budget="smoke", recipe="paper", machine=False,
                  overrides={"model.lc_scale": lc_scale})
    torch.manual_seed(0)
    model = build_model("avade", cfg.model_cfg, DataSpec(channels=1, resolution=32, levels=256, n_classes=10))
    x = (torch.rand(16, 1, 32, 32, generator=torch.Generator().manual_seed(0)) * 255).to(torch.uint8)
    opt = torch.optim.Adam(model.D.parameters(), 1e-3)
    for _ in range(10):
        opt.zero_grad()
        model.losses("disc", Batch(x, None))["loss"].backward()
        opt.step()
    dec = [p for n, p in model.named_parameters()
           if n.startswith("vae.") and not n.startswith(("vae.encoder", "vae.enc_heads"))]
    kappa = 1.0 / model.data.dims if lc_scale == "per_dim" else 1.0
    torch.manual_seed(1)
    g_c = torch.autograd.grad(kappa * model._nll_parts(dequantize(x, 256), None)["nll"].mean(), dec, allow_unused=True)
    torch.manual_seed(2)
    g_q = torch.autograd.grad(cfg.model_cfg.adv_weight * g_loss(model.D(model._fake_v(16, None), None)), dec,
                              allow_unused=True)
    norm = lambda gs: math.sqrt(sum(float((g ** 2).sum()) for g in gs if g is not None))  # noqa: E731
    return norm(g_q) / norm(g_c)


def test_per_dimension_scaling_multiplies_the_adversarial_weight_by_the_dimensions():
    """Per dimension, L_C's gradient shrinks by D = 1,024 (1x32x32) against lambda L_Q's: with Adamax (invariant to a
    global loss scale) that is an adversarial weight of 100 x 1,024 = 102,400 per image.  Measured here on the
    decoder after 10 D steps (smoke widths, a fixed batch): per image the likelihood gradient dominates (ratio
    ~8e-4), per dimension the two are level (~0.8); along real training the note measured 0.5-7 per image and
    450-5,000 per dimension as D sharpens."""
    per_image, per_dim = _decoder_gradient_ratio("per_image"), _decoder_gradient_ratio("per_dim")
    assert per_dim / per_image == pytest.approx(1024.0, rel=1e-4)
    assert 1e-4 < per_image < 1e-2
    assert 0.1 < per_dim < 10.0


def test_disc_steps_runs_the_discriminator_that_many_times_per_step(tmp_path):
    from protocols.trainer import Trainer
    cfg = resolve("gan", dataset="digits", budget="smoke", machine=False,
                  overrides={"train.disc_steps": "3", "train.steps": "2", "model.infer_steps": "0",
                             "train.threads": "1", "train.device": "cpu"})
    model = build_model("gan", cfg.model_cfg, DataSpec(channels=1, resolution=8, levels=17, n_classes=10))
    calls = []
    losses = model.losses
    model.losses = lambda phase, batch: calls.append(phase) or losses(phase, batch)
    x = torch.randint(0, 17, (32, 1, 8, 8), dtype=torch.uint8)
    Trainer(model, x, cfg, tmp_path).fit()
    assert calls == ["disc", "disc", "disc", "gen"] * 2
    base = resolve("gan", dataset="digits", budget="smoke", machine=False)
    assert "disc_steps" not in base.hashed()["train"]                  # 1 (the default) keeps every old hash
    with pytest.raises(ConfigError, match="train.disc_steps"):
        resolve("gan", machine=False, overrides={"train.disc_steps": "0"})
