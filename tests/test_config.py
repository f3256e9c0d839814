"""Typed configuration: budgets are data, overrides are type-checked, unknown keys are errors."""
import json

import pytest

from protocols.config import BUDGETS, ConfigError, RunConfig, TrainConfig, parse_overrides, resolve, save_config, \
    set_value


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


def test_hash_tracks_what_is_trained_not_logging():
    a, b = _cfg(), _cfg()
    assert a.hash() == b.hash()
    set_value(b, "train.log_every", "3")
    assert a.hash() == b.hash()
    set_value(b, "train.steps", "3")
    assert a.hash() != b.hash()


def test_budget_presets_resolve_for_every_registered_model(tmp_path):
    from models import MODELS
    for name in MODELS.names():
        for budget in BUDGETS:
            cfg = resolve(name, budget=budget)
            assert cfg.budget == budget and cfg.train.steps > 0
    cfg = resolve("vae", budget="smoke", overrides={"train.steps": "3"})
    assert cfg.train.steps == 3
    save_config(cfg, tmp_path / "c.json")
    saved = json.loads((tmp_path / "c.json").read_text())
    assert saved["train"]["steps"] == 3 and saved["config_hash"] == cfg.hash()
    with pytest.raises(ConfigError, match="unknown budget"):
        resolve("vae", budget="huge")
