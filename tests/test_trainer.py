"""The one trainer: exact resume, non-finite losses, checkpoints, validation selection."""
import json

import pytest
import torch

from models.base import DataSpec
from protocols.config import RunConfig, TrainConfig
from protocols.trainer import CheckpointError, EpochSampler, NonFiniteLossError, Trainer, load_checkpoint

from toy_models import ToyAdversarial, ToyConfig, ToyGaussian

SPEC = DataSpec(channels=1, resolution=4, levels=17, n_classes=0)


def _data(n=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 17, (n, 1, 4, 4), generator=g, dtype=torch.uint8)


def _cfg(steps=6, **train):
    tc = TrainConfig(steps=steps, batch_size=8, log_every=2, sample_every=0, ckpt_every=2, progress=False,
                     **train)
    return RunConfig(model="toy", seed=3, train=tc, model_cfg=ToyConfig())


def _trainer(tmp, cls=ToyAdversarial, cfg=None, val=None):
    torch.manual_seed(0)
    cfg = cfg or _cfg()
    return Trainer(cls(cfg.model_cfg, SPEC), _data(), cfg, tmp, val_x=val)


def _flat(model):
    return torch.cat([t.detach().flatten().float() for t in model.state_dict().values()])


def test_resume_matches_uninterrupted_run(tmp_path):
    full = _trainer(tmp_path / "full")
    full.fit()
    part = _trainer(tmp_path / "part")
    res = part.fit(stop_at=3)  # interrupted after 3 of 6 steps (odd: not on a checkpoint boundary)
    assert res.step == 3 and load_checkpoint(res.last)["step"] == 3
    resumed = _trainer(tmp_path / "part")  # a fresh process would rebuild everything from scratch
    res = resumed.fit(resume=True)
    assert res.step == 6
    # exact in practice (verified bitwise); compared to round-off so that a BLAS path that depends on memory
    # alignment cannot fail it, while a lost RNG or optimiser state (an O(1) change) still does
    torch.testing.assert_close(_flat(full.model), _flat(resumed.model), rtol=1e-6, atol=1e-7)
    for k in full.optims:
        a = full.optims[k].state_dict()["state"]
        b = resumed.optims[k].state_dict()["state"]
        for i in a:
            torch.testing.assert_close(a[i]["exp_avg"], b[i]["exp_avg"], rtol=1e-6, atol=1e-8)


def test_non_finite_loss_names_the_loss_and_step_and_keeps_checkpoint(tmp_path):
    tr = _trainer(tmp_path)
    tr.fit(stop_at=2)
    before = _flat(tr.model)
    tr2 = _trainer(tmp_path)
    tr2.resume()
    with torch.no_grad():
        tr2.model.mu.fill_(float("nan"))
    with pytest.raises(NonFiniteLossError, match=r"loss '\w+' of phase '\w+' is nan at step 2"):
        tr2.fit(resume=False)
    kept = ToyAdversarial(ToyConfig(), SPEC)
    kept.load_state_dict(load_checkpoint(tmp_path / "last.pt")["model"])
    assert torch.equal(_flat(kept), before)


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    tr = _trainer(tmp_path)
    tr.fit(stop_at=2)
    (tmp_path / "last.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="corrupt"):
        _trainer(tmp_path).fit(resume=True)


def test_resume_refuses_another_configuration(tmp_path):
    _trainer(tmp_path).fit(stop_at=2)
    with pytest.raises(CheckpointError, match="another configuration"):
        _trainer(tmp_path, cfg=_cfg(lr=1e-3)).fit(resume=True)


def test_stats_samples_and_best_checkpoint(tmp_path):
    cfg = _cfg(steps=6, val_every=2, val_images=8)
    tr = _trainer(tmp_path, cls=ToyGaussian, cfg=cfg, val=_data(8, seed=1))
    res = tr.fit()
    lines = [json.loads(l) for l in (tmp_path / "stats.jsonl").read_text().splitlines()]
    assert any("val_bpd" in l for l in lines) and any("main/loss" in l for l in lines)
    assert res.best is not None and res.best_val_bpd == min(l["val_bpd"] for l in lines if "val_bpd" in l)
    assert list((tmp_path / "samples").glob("step_*.png"))
    ck = torch.load(res.best, weights_only=True)
    assert ck["step"] in (2, 4, 6)


def test_sampler_is_deterministic_and_sharded():
    a = EpochSampler(40, 8, seed=1)
    b = EpochSampler(40, 8, seed=1)
    assert all(torch.equal(a.indices(s), b.indices(s)) for s in (0, 4, 7, 3))
    r0, r1 = EpochSampler(40, 8, 1, rank=0, world=2), EpochSampler(40, 8, 1, rank=1, world=2)
    assert not set(r0.indices(0).tolist()) & set(r1.indices(0).tolist())
    with pytest.raises(ValueError, match="batch size"):
        EpochSampler(4, 8, seed=0)


@pytest.mark.parametrize("name", ["avade", "gan"])
def test_resume_is_exact_for_registered_models(tmp_path, name):
    """The same check on real models: flows with batch norm, two phases, the GAN's extra stage."""
    from models import build_model
    from protocols.config import resolve
    spec = DataSpec(1, 8, 17, 10)
    x = torch.randint(0, 17, (32, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)

    def trainer(d):
        cfg = resolve(name, budget="smoke", overrides={"train.steps": "4", "train.progress": "false"})
        if name == "gan":
            cfg.model_cfg.infer_steps = 2
        torch.manual_seed(0)
        return Trainer(build_model(name, cfg.model_cfg, spec), x, cfg, d)

    full = trainer(tmp_path / "full")
    full.fit()
    trainer(tmp_path / "part").fit(stop_at=3)
    resumed = trainer(tmp_path / "part")
    resumed.fit(resume=True)
    assert resumed.step == full.step
    torch.testing.assert_close(_flat(full.model), _flat(resumed.model), rtol=1e-6, atol=1e-7)


def test_phase_lr_sets_only_the_named_phase(tmp_path):
    tr = _trainer(tmp_path, cfg=_cfg(lr=4e-3, phase_lr="gen=1e-3"))
    assert tr.optims["gen"].param_groups[0]["lr"] == 1e-3  # the two time-scale rule: G slower than D
    assert tr.optims["disc"].param_groups[0]["lr"] == 4e-3
    same = _trainer(tmp_path / "same", cfg=_cfg(lr=1e-3))  # "" (the default) = train.lr for every phase
    assert {o.param_groups[0]["lr"] for o in same.optims.values()} == {1e-3}
    assert _cfg(lr=1e-3, phase_lr="gen=5e-4").hash() != _cfg(lr=1e-3).hash()  # a new cell, never a reused one
    assert _cfg(lr=1e-3, scalar_lr=0.02).hash() != _cfg(lr=1e-3).hash()


def test_phase_lr_errors_name_the_entry_or_the_phases():
    from protocols.config import ConfigError, parse_phase_lr, resolve
    assert parse_phase_lr(" gen=5e-4, disc=2e-3 ") == {"gen": 5e-4, "disc": 2e-3}
    for bad in ("gen", "gen=", "gen=-1", "=1e-3", "gen=fast"):
        with pytest.raises(ConfigError, match="train.phase_lr: bad entry"):
            parse_phase_lr(bad)
    with pytest.raises(ConfigError, match="does not train; its phases: disc, gen, infer"):
        resolve("gan", budget="smoke", overrides={"train.phase_lr": "main=1e-3"})
    assert resolve("gan", budget="smoke", overrides={"train.phase_lr": "infer=1e-3"}).train.phase_lr == "infer=1e-3"


def test_scalar_lr_gives_the_global_log_sigma_its_own_rate(tmp_path):
    from models import build_model
    from protocols.config import resolve
    spec = DataSpec(1, 8, 17, 10)
    x = torch.randint(0, 17, (32, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    cfg = resolve("vae", budget="smoke", overrides={"train.steps": "3", "train.progress": "false",
                                                     "train.lr": "1e-3", "train.scalar_lr": "0.05"})
    torch.manual_seed(0)
    model = build_model("vae", cfg.model_cfg, spec)
    start = model.log_sigma.item()
    tr = Trainer(model, x, cfg, tmp_path)
    big, small = tr.optims["main"].param_groups
    assert small["lr"] == 0.05 and small["params"] == [model.log_sigma] and big["lr"] == 1e-3
    assert sum(p.numel() for p in big["params"]) == sum(p.numel() for p in model.parameters()) - 1
    tr.fit()
    assert abs(model.log_sigma.item() - start) > 3 * 1e-3 * 3  # moved faster than lr lets Adamax move it


def test_autocast_bf16_runs_the_losses_in_bf16_and_keeps_weights_fp32(tmp_path):
    """``train.autocast=bf16``: convolutions of the training losses run in bfloat16 (the GP's double backward
    included); parameters, optimiser state and the stored checkpoint stay fp32; the losses stay finite."""
    from models import build_model
    from protocols.config import resolve
    spec = DataSpec(1, 8, 17, 10)
    x = torch.randint(0, 17, (32, 1, 8, 8), generator=torch.Generator().manual_seed(0), dtype=torch.uint8)
    cfg = resolve("avade", budget="smoke", overrides={"train.steps": "2", "train.progress": "false",
                                                       "train.autocast": "bf16"}, machine=False)
    torch.manual_seed(0)
    model = build_model("avade", cfg.model_cfg, spec)
    seen = set()
    conv = next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_hook(lambda m, i, o: seen.add(o.dtype))
    tr = Trainer(model, x, cfg, tmp_path)
    tr.fit()
    assert torch.bfloat16 in seen
    assert {p.dtype for p in model.parameters()} == {torch.float32}
    assert all(t.dtype == torch.float32 for t in load_checkpoint(tr.last_path)["model"].values()
               if t.is_floating_point())
    assert tr.history and all(v == v for h in tr.history for v in h.values() if isinstance(v, float))
    seen.clear()
    model.eval()
    with torch.no_grad():
        model.sample(4)                      # evaluation is outside the trainer's autocast: fp32
    assert seen == {torch.float32}


def test_autocast_off_keeps_the_old_hash_and_auto_follows_the_machine(monkeypatch):
    import protocols.config as C
    off = C.resolve("vae", budget="smoke", machine=False)
    assert "autocast" not in off.hashed()["train"]   # fp32 cells keep the hashes they had before the key
    bf16 = C.resolve("vae", budget="smoke", overrides={"train.autocast": "bf16"}, machine=False)
    assert bf16.hash() != off.hash()
    for native, want in ((True, "bf16"), (False, "off")):
        monkeypatch.setattr(C, "native_bf16", lambda device, native=native: native)
        cfg = C.resolve("vae", budget="smoke", overrides={"train.autocast": "auto", "train.device": "cpu"})
        assert cfg.train.autocast == want and "auto" in cfg.sources["train.autocast"]
    with pytest.raises(C.ConfigError, match="autocast"):
        C.resolve("vae", budget="smoke", overrides={"train.autocast": "fp16"}, machine=False)


def test_ema_follows_the_warmed_up_recurrence_and_is_what_is_evaluated(tmp_path):
    """``train.ema``: the average obeys ema_t = d_t ema_{t-1} + (1 - d_t) w_t (d_t = min(ema, (1+t)/(10+t)),
    the first step copies); the checkpoint's ``model`` is the average and ``model_train`` the iterate;
    validation and samples see the average, and training continues from the iterate."""
    cfg = _cfg(steps=5, ema=0.5)
    tr = _trainer(tmp_path, cfg=cfg, val=_data(8, seed=1))
    want = None
    for t in range(5):
        tr.fit(stop_at=t + 1)
        w = tr.model.mu.detach().clone()
        d = 0.0 if t == 0 else min(0.5, (1 + t) / (10 + t))
        want = w if want is None else d * want + (1 - d) * w
        torch.testing.assert_close(tr.ema["mu"], want, rtol=1e-6, atol=1e-7)
    assert not torch.allclose(tr.ema["mu"], tr.model.mu)          # the average lags the iterate
    ck = load_checkpoint(tr.last_path)
    torch.testing.assert_close(ck["model"]["mu"], tr.ema["mu"])
    torch.testing.assert_close(ck["model_train"]["mu"], tr.model.mu.detach())
    iterate = tr.model.mu.detach().clone()
    with tr.averaged() as m:
        torch.testing.assert_close(m.mu.detach(), tr.ema["mu"])
        torch.manual_seed(0)
        s_avg = m.sample(4)
    torch.testing.assert_close(tr.model.mu.detach(), iterate)    # restored after the block
    tr.save_samples(tmp_path / "s.png", n=4)
    from models.base import bits_per_dim
    got = tr.validate()
    for weights in (tr.ema, {k: v.detach() for k, v in tr.model.state_dict().items()}):
        twin = ToyAdversarial(cfg.model_cfg, SPEC)
        twin.load_state_dict(weights)
        torch.manual_seed(12345)              # validate()'s fixed dequantisation noise
        with torch.no_grad():
            bpd = float(bits_per_dim(twin.nll(tr.val_x[:cfg.train.val_images]).mean(), SPEC.dims, SPEC.levels))
        assert (abs(bpd - got) < 1e-6) == (weights is tr.ema)   # validated on the average, not the iterate
    torch.manual_seed(0)
    assert not torch.allclose(tr.model.sample(4), s_avg)          # the iterate samples differently
    assert cfg.hash() != _cfg(steps=5).hash()
    assert "ema" not in _cfg().hashed()["train"]                  # off: the hash it had before the key


def test_ema_resume_matches_uninterrupted_run(tmp_path):
    cfg = _cfg(steps=6, ema=0.9)
    full = _trainer(tmp_path / "full", cfg=cfg)
    full.fit()
    _trainer(tmp_path / "part", cfg=cfg).fit(stop_at=3)
    resumed = _trainer(tmp_path / "part", cfg=cfg)
    resumed.fit(resume=True)
    torch.testing.assert_close(_flat(full.model), _flat(resumed.model), rtol=1e-6, atol=1e-7)
    for k in full.ema:
        torch.testing.assert_close(full.ema[k], resumed.ema[k], rtol=1e-6, atol=1e-7)
