"""The registered flows (realnvp, glow, flowgan) against the GenerativeModel contract (models/base.py)."""
import dataclasses
import io
import math

import pytest
import torch

from models import MODELS, Batch, DataSpec, bits_per_dim, build_model
from models.flow_models import FlowDensityModel
from protocols.config import resolve

NAMES = ["realnvp", "glow", "flowgan"]
SPEC = DataSpec(channels=1, resolution=8, levels=17)


def smoke_model(name, spec=SPEC, **overrides):
    cfg = resolve(name, budget="smoke", machine=False).model_cfg
    torch.manual_seed(0)
    return build_model(name, dataclasses.replace(cfg, **overrides), spec)


def images(n=8, spec=SPEC, seed=1):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, spec.levels, (n, *spec.shape), generator=g, dtype=torch.uint8)


def train_step(model, x):
    """One hand-driven step of every phase (what the trainer does), returning each phase's losses."""
    out = {}
    for phase in model.stages(1)[0].phases:
        opt = torch.optim.Adamax(model.phase_parameters(phase), lr=2e-3)
        opt.zero_grad()
        losses = model.losses(phase, Batch(x))
        losses["loss"].backward()
        opt.step()
        out[phase] = {k: float(v.detach()) for k, v in losses.items()}
    return out


@pytest.mark.parametrize("name", NAMES)
def test_smoke_step_changes_every_phase_parameters(name):
    model = smoke_model(name).train()
    x = images()
    model.losses(model.phases[-1], Batch(x))                    # Glow's ActNorm initialises here
    before = {ph: [p.detach().clone() for p in model.phase_parameters(ph)] for ph in model.phases}
    out = train_step(model, x)
    assert set(out) == set(model.phases)
    for phase, losses in out.items():
        assert "loss" in losses and all(math.isfinite(v) for v in losses.values()), losses
        after = list(model.phase_parameters(phase))
        assert any(not torch.equal(a, b) for a, b in zip(after, before[phase])), phase


@pytest.mark.parametrize("name", NAMES)
def test_nll_finite_and_consistent_with_logged_bpd(name):
    model = smoke_model(name)
    x = images()
    train_step(model, x)
    model.eval()
    torch.manual_seed(5)
    nll = model.nll(x)
    assert nll.shape == (8,) and torch.isfinite(nll).all()
    torch.manual_seed(5)
    phase = "gen" if name == "flowgan" else "main"
    with torch.no_grad():
        logged = model.losses(phase, Batch(x))
    assert float(logged["nll"]) == pytest.approx(float(nll.mean()), rel=1e-5)
    assert float(logged["bpd"]) == pytest.approx(float(bits_per_dim(nll.mean(), SPEC.dims, SPEC.levels)), rel=1e-6)
    assert model.nll(x, k=16).shape == (8,)                     # k ignored: the likelihood is exact
    with pytest.raises(ValueError, match="integer"):
        model.nll(x.float())


def test_bpd_of_a_uniform_density_is_log2_levels():
    for levels in (2, 17, 256):
        assert bits_per_dim(0.0, SPEC.dims, levels) == pytest.approx(math.log2(levels), abs=1e-12)


def test_realnvp_nll_is_the_change_of_variables():
    model = smoke_model("realnvp").eval()
    u = torch.rand(4, *SPEC.shape)
    l, ld_logit = model.pre(u)
    y, ld_flow = model.flow(l)
    expected = 0.5 * (y ** 2).flatten(1).sum(1) + 0.5 * SPEC.dims * math.log(2 * math.pi) - ld_flow - ld_logit
    assert torch.allclose(-model.log_prob_u(u), expected, atol=1e-4)


@pytest.mark.parametrize("name", NAMES)
def test_samples_in_unit_interval_and_bn_stats_untouched(name):
    model = smoke_model(name)
    train_step(model, images())
    model.train()
    buffers = {k: v.clone() for k, v in model.state_dict().items()}
    s = model.sample(5)
    assert s.shape == (5, *SPEC.shape) and s.dtype == torch.float32
    assert float(s.min()) >= 0.0 and float(s.max()) <= 1.0
    assert all(torch.equal(buffers[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.zeros(2, dtype=torch.long))


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_round_trip(name):
    model = smoke_model(name)
    train_step(model, images())
    model.eval()
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    buf.seek(0)
    fresh = smoke_model(name)
    fresh.load_state_dict(torch.load(buf, weights_only=True))
    fresh.eval()
    x = images(seed=3)
    outs = []
    for m in (model, fresh):
        torch.manual_seed(7)
        outs.append((m.nll(x), m.sample(4)))
    for a, b in zip(outs[0], outs[1]):        # same weights, same noise: equal to round-off
        torch.testing.assert_close(a, b, rtol=1e-6, atol=1e-6)


def test_flowgan_phases_touch_only_their_parameters():
    model = smoke_model("flowgan").train()
    x = images()
    for phase, other in (("disc", model.flow), ("gen", model.disc)):
        model.zero_grad(set_to_none=True)
        model.losses(phase, Batch(x))["loss"].backward()
        assert all(p.grad is None for p in other.parameters()), phase
        assert any(p.grad is not None for p in model.phase_parameters(phase)), phase


def test_flowgan_ce_loss_and_bad_config():
    model = smoke_model("flowgan", adv_loss="ce")
    out = train_step(model, images())
    assert all(math.isfinite(v) for v in out["disc"].values()) and "gp" in out["disc"]
    with pytest.raises(ValueError, match="adv_loss"):
        smoke_model("flowgan", adv_loss="hinge")


def test_unknown_phase_and_three_channels():
    spec = DataSpec(channels=3, resolution=8, levels=256)
    for name in NAMES:
        model = smoke_model(name, spec=spec)
        out = train_step(model, images(spec=spec))
        assert all(math.isfinite(v) for losses in out.values() for v in losses.values())
        with pytest.raises(KeyError):
            model.losses("nope", Batch(images(spec=spec)))
    assert issubclass(MODELS.get("glow"), FlowDensityModel)
