"""Configuration: one table of budgets and presets, resolved in one place with each value's origin;
overrides type-checked and applied to the models that have them; values checked up front."""
import json

import pytest

from protocols.api import plan
from protocols.config import (BUDGETS, ConfigError, RunConfig, available_cpus, native_bf16, parse_overrides,
                              provenance, resolve, save_config, set_value, stage_plan)


def _cfg():
    from tests_support import TinyCfg
    return RunConfig(model="x", model_cfg=TinyCfg())


def test_overrides_are_type_checked():
    cfg = _cfg()
    set_value(cfg, "train.steps", "12")
    set_value(cfg, "train.lr", "1e-3")
    set_value(cfg, "train.channels_last", "true")
    set_value(cfg, "model.width", "7")
    set_value(cfg, "model.name", "a<b>")
    assert (cfg.train.steps, cfg.train.lr, cfg.train.channels_last) == (12, 1e-3, True)
    assert cfg.model_cfg.width == 7 and cfg.model_cfg.name == "a<b>"
    with pytest.raises(ConfigError, match="bad value for train.steps"):
        set_value(cfg, "train.steps", "ten")
    with pytest.raises(ConfigError, match="bad value for train.channels_last"):
        set_value(cfg, "train.channels_last", "maybe")
    with pytest.raises(ConfigError, match="unknown config key 'train.stepz'"):
        set_value(cfg, "train.stepz", "1")
    with pytest.raises(ConfigError, match="unknown config section"):
        set_value(cfg, "optim.lr", "1")
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides(["train.steps"])


def test_hash_tracks_what_is_trained_not_logging_or_the_seed():
    a, b = _cfg(), _cfg()
    assert a.hash() == b.hash()
    set_value(b, "train.log_every", "3")
    b.seed = 7                                   # seeds of one configuration share its hash
    assert a.hash() == b.hash()
    set_value(b, "train.steps", "3")
    assert a.hash() != b.hash()


def test_thread_count_is_hashed_on_cpu_only():
    a, b = _cfg(), _cfg()
    a.train.device = b.train.device = "cpu"
    a.train.threads, b.train.threads = 1, 2
    assert a.hash() != b.hash()
    a.train.device = b.train.device = "cuda:0"
    assert a.hash() == b.hash()


def test_default_threads_follow_omp_num_threads_and_affinity(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    assert available_cpus() == 1
    assert resolve("vae", budget="smoke").train.threads == 1
    monkeypatch.delenv("OMP_NUM_THREADS")
    import os
    assert available_cpus() == len(os.sched_getaffinity(0))


@pytest.mark.parametrize("dataset", ["digits", "cifar10"])
def test_every_registered_model_resolves_at_every_budget(dataset):
    from models import MODELS
    for name in MODELS.names():
        for budget in BUDGETS:
            cfg = resolve(name, budget=budget, dataset=dataset)
            assert cfg.budget == budget and cfg.train.steps > 0
            assert stage_plan(cfg) and all(s["steps"] <= cfg.train.steps for s in stage_plan(cfg))


def test_layers_apply_in_order_and_say_where_each_value_came_from():
    cfg = resolve("avade-wg-rd", budget="cpu", protocol="refinements", protocol_settings={"eval.prd_runs": 3},
                  overrides={"model.z_dim": "16", "avade-wg-rd.adv_weight": "50"})
    src = {k: v["from"] for k, v in provenance(cfg).items()}
    assert src["train.beta1"] == "budget cpu"
    assert src["model.width"] == "preset avade-wg-rd (cpu)" and cfg.model_cfg.width == 64
    assert src["model.disc_width"] == "preset avade-rd (cpu)" and cfg.model_cfg.disc == "rd"
    assert src["model.gp_weight"] == "preset avade (cpu)"
    assert src["eval.prd_runs"] == "protocol refinements" and cfg.eval.prd_runs == 3
    assert src["model.adv_weight"] == "--set avade-wg-rd.adv_weight" and cfg.model_cfg.adv_weight == 50.0
    assert src["model.z_dim"] == "--set model.z_dim" and cfg.model_cfg.z_dim == 16
    assert src["model.iaf"] == "default of ADEConfig"                # every value names its source
    assert src["model.disc"] == "registration of avade-wg-rd"        # what the name means: its registration
    assert src["train.threads"].startswith("machine")


def test_a_resolution_specific_preset_wins_over_the_budget(monkeypatch):
    from models import MODELS
    monkeypatch.setitem(MODELS.meta("vae")["presets"], "cpu@32", {"width": 48})
    assert resolve("vae", budget="cpu", dataset="cifar10").model_cfg.width == 48
    assert resolve("vae", budget="cpu", dataset="digits").model_cfg.width == 32


def test_fashion_mnist_cpu_presets_apply_one_rule_to_table_1():
    """At 32x32 the five Table 1 models get the same training budget (steps and batch) and the same generator."""
    cfgs = {n: resolve(n, budget="cpu", dataset="fashion-mnist") for n in ("gan", "vae", "vade", "avgde", "avade")}
    assert {(c.train.steps, c.train.batch_size) for c in cfgs.values()} == {(1600, 32)}
    assert all(c.train.channels_last for c in cfgs.values())
    assert all(c.train.autocast == ("bf16" if native_bf16(c.train.device) else "off") for c in cfgs.values())
    assert {(c.model_cfg.width, c.model_cfg.z_dim) for c in cfgs.values()} == {(32, 32)}
    assert {c.model_cfg.gp_weight for n, c in cfgs.items() if n in ("gan", "avgde", "avade")} == {10.0}
    # equal tuning: the discriminators train at lr 2e-3 everywhere and every adversarial model's generator at a
    # quarter of it (the two time-scale rule), not only the GAN's
    assert {c.train.lr for c in cfgs.values()} == {2e-3}
    assert {n: c.train.phase_lr for n, c in cfgs.items() if c.train.phase_lr} == \
        {"gan": "gen=5e-4", "avgde": "gen=5e-4", "avade": "gen=5e-4"}
    assert resolve("gan-rd", budget="cpu", dataset="fashion-mnist").train.phase_lr == "gen=5e-4"
    assert resolve("gan", budget="cpu", dataset="digits").train.phase_lr == ""     # 8x8 keeps equal rates
    assert resolve("avade", budget="cpu", dataset="digits").train.steps == 400     # 8x8 keeps its presets


def test_save_config_records_hash_and_sources(tmp_path):
    cfg = resolve("vae", budget="smoke", overrides={"train.steps": "3"})
    save_config(cfg, tmp_path / "c.json")
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["train"]["steps"] == 3 and saved["config_hash"] == cfg.hash()
    assert saved["sources"]["train.steps"] == "--set train.steps"
    with pytest.raises(ConfigError, match="unknown budget"):
        resolve("vae", budget="huge")


def test_stages_are_bounded_by_train_steps():
    cfg = resolve("gan", budget="paper", dataset="cifar10", overrides={"train.steps": "3"})
    assert cfg.model_cfg.infer_steps == 20000
    assert stage_plan(cfg) == [{"stage": "adversarial", "phases": ["disc", "gen"], "steps": 3},
                               {"stage": "inference", "phases": ["infer"], "steps": 3}]


@pytest.mark.parametrize("key, value, needle", [
    ("train.steps", "0", "train.steps=0 must be >= 1"),
    ("train.steps", "-5", "train.steps=-5 must be >= 1"),
    ("train.batch_size", "0", "train.batch_size=0 must be >= 1"),
    ("train.batch_size", "-8", "train.batch_size=-8 must be >= 1"),
    ("train.lr", "0", "train.lr=0.0 must be > 0"),
    ("train.lr", "nan", "must be a finite number"),
    ("train.beta1", "1", "train.beta1=1.0 must be < 1"),
    ("train.device", "tpu9", "train.device='tpu9' is not valid"),
    ("train.optimizer", "sgd", "must be one of adamax, adam"),
    ("eval.select", "nosuch", "must be one of val_bpd, last"),
    ("eval.extractor", "nosuch", "must be one of domain, inception"),
    ("eval.n_samples", "0", "eval.n_samples=0 must be >= 1"),
    ("eval.batch_size", "0", "eval.batch_size=0 must be >= 1"),
    ("eval.prdc_k", "0", "eval.prdc_k=0 must be >= 1"),
    ("model.width", "0", "model.width=0 must be >= 1"),
    ("model.sample_noise", "blur", "must be one of mean, gaussian"),
])
def test_bad_values_fail_up_front(key, value, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        resolve("avade", budget="smoke", overrides={key: value})


def test_cuda_device_without_cuda_is_an_error_up_front():
    import torch
    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve("vae", budget="smoke", overrides={"train.device": "cuda"})


def test_a_model_key_reaches_the_models_that_have_it():
    cfgs, reach = plan("ablation", seeds=[0], budget="smoke", overrides={"model.adv_weight": "10"})
    assert reach == {"model.adv_weight": ["avade", "avgde"]}
    by = {c.model: c for c in cfgs}
    assert by["avade"].model_cfg.adv_weight == 10 and by["avgde"].model_cfg.adv_weight == 10
    assert by["vae"].model_cfg.adv_weight == 100.0         # no discriminator: the key does not reach it
    assert "model.adv_weight" not in by["gan"].sources


def test_a_model_key_that_reaches_no_model_is_an_error():
    with pytest.raises(ConfigError, match="has no effect on vae"):
        plan("ablation", ["vae"], [0], budget="smoke", overrides={"model.adv_weight": "10"})
    with pytest.raises(ConfigError, match="unknown config key 'model.lambda_adv'"):
        plan("ablation", None, [0], budget="smoke", overrides={"model.lambda_adv": "10"})


def test_model_scoped_keys():
    cfgs, reach = plan("ablation", seeds=[0], budget="smoke",
                       overrides={"avade.adv_weight": "7", "gan.train.steps": "2", "model.z_dim": "4"})
    by = {c.model: c for c in cfgs}
    assert by["avade"].model_cfg.adv_weight == 7 and by["avgde"].model_cfg.adv_weight == 100.0
    assert by["gan"].train.steps == 2 and by["vae"].train.steps == 4
    assert reach["avade.adv_weight"] == ["avade"] and reach["gan.train.steps"] == ["gan"]
    assert all(c.model_cfg.z_dim == 4 for c in cfgs if c.model != "real")
    with pytest.raises(ConfigError, match="'flowgan' is not a model of this run"):
        plan("ablation", seeds=[0], budget="smoke", overrides={"flowgan.gp_weight": "1"})
    # the protocol's aliases apply to scopes too (gan_train_test trains avade-cond for "avade")
    cfgs, _ = plan("gan_train_test", ["avade"], [0], budget="smoke", overrides={"avade.adv_weight": "3"})
    assert cfgs[0].model == "avade-cond" and cfgs[0].model_cfg.adv_weight == 3
