"""Numerical checks of the AV-ADE building blocks: KL terms, IAF, (conditional) weight norm,
gradient penalty, adversarial losses, bounds, and side-effect-free evaluation (BN statistics)."""
from __future__ import annotations

import math

import pytest
import torch

from protocols.config import resolve
from torch.distributions import Normal, kl_divergence

from models import MODELS, Batch, DataSpec, build_model
from models.adversarial import d_loss, discriminator_losses, g_loss, gradient_penalty
from models.discriminators import ResidualD, SimpleD, n_octaves
from models.hvae import IAFStep
from models.layers import WNConv2d, WNConvTranspose2d, WNLinear, ar_mask
from models.nets import Encoder, Generator, gaussian_log_density, kl_normal

DATA = DataSpec(channels=1, resolution=8, levels=17, n_classes=10)


@pytest.fixture(autouse=True)
def one_thread():
    """Tiny tensors: one thread is ~20x faster than two contending OpenMP threads on a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def smoke_model(name: str, data: DataSpec = DATA, **overrides):
    cfg = resolve(name, budget="smoke", machine=False).model_cfg
    for key, value in overrides.items():
        setattr(cfg, key, value)
    return build_model(name, cfg, data)


def digits_batch(n: int = 8, data: DataSpec = DATA, seed: int = 0) -> Batch:
    g = torch.Generator().manual_seed(seed)
    x = torch.randint(0, data.levels, (n, *data.shape), generator=g, dtype=torch.uint8)
    return Batch(x, torch.randint(0, max(data.n_classes, 1), (n,), generator=g))


# ---- Gaussian terms --------------------------------------------------------------------------
def test_kl_and_log_density_match_torch_distributions():
    torch.manual_seed(0)
    m, ls, pm, pls = (torch.randn(5, 3, 4, 4) for _ in range(4))
    ref = kl_divergence(Normal(m, ls.exp()), Normal(pm, pls.exp())).flatten(1).sum(1)
    torch.testing.assert_close(kl_normal(m, ls, pm, pls), ref)
    ref0 = kl_divergence(Normal(m, ls.exp()), Normal(0.0, 1.0)).flatten(1).sum(1)
    torch.testing.assert_close(kl_normal(m, ls), ref0)
    x = torch.randn(5, 3, 4, 4)
    torch.testing.assert_close(gaussian_log_density(x, m, ls),
                               Normal(m, ls.exp()).log_prob(x).flatten(1).sum(1))


# ---- IAF ----------------------------------------------------------------------------------------
def test_ar_mask_is_strictly_autoregressive_with_zerodiag():
    m = ar_mask(4, 8, 3, zerodiag=False)[:, :, 1, 1]
    assert m[0, 0] == 1 and m[1, 0] == 1 and m[0, 1] == 0        # out groups of 2 see inputs <= group
    z = ar_mask(8, 4, 3, zerodiag=True)[:, :, 1, 1]
    assert z[0].sum() == 0 and z[1, :2].sum() == 2 and z[1, 2:].sum() == 0
    full = ar_mask(2, 2, 3, zerodiag=True)
    assert full[:, :, 2, :].sum() == 0 and full[:, :, 1, 2].sum() == 0 and full[:, :, 0, :].sum() == 12


def test_iaf_jacobian_is_triangular_and_logdet_is_exact():
    torch.manual_seed(0)
    step = IAFStep(latent_ch=2, hidden=4).double()
    with torch.no_grad():                     # make the AR nets matter (0.1-scaled heads are tiny)
        for p in step.parameters():
            p.mul_(3.0)
    c, h, w = 2, 3, 3
    z = torch.randn(1, c, h, w, dtype=torch.float64)
    ctx = torch.randn(1, 4, h, w, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: step(t.view(1, c, h, w), ctx)[0].flatten(),
                                             z.flatten())
    order = torch.arange(c * h * w).view(c, h, w).permute(1, 2, 0).flatten()   # raster, then channel
    j = jac[order][:, order]
    assert torch.allclose(torch.triu(j, diagonal=1), torch.zeros_like(j))
    assert torch.tril(j, diagonal=-1).abs().sum() > 1e-3                        # not trivially diagonal
    _, logdet = step(z, ctx)
    torch.testing.assert_close(logdet[0], torch.linalg.slogdet(j)[1])
    torch.testing.assert_close(logdet[0], torch.log(torch.diagonal(j).abs()).sum())


def test_iaf_model_kl_is_the_monte_carlo_log_ratio_below_the_top_layer():
    model = smoke_model("avade-iaf-rd").eval()
    x = torch.randn(4, 1, 8, 8)
    torch.manual_seed(1)
    post = model.vae.posterior(x)
    torch.manual_seed(1)                       # z0 is the first draw of a posterior pass
    m0, ls0, _ = model.vae.encoder(x)
    z0 = m0 + ls0.exp() * torch.randn_like(m0)
    mc0 = gaussian_log_density(z0, m0, ls0) - Normal(0.0, 1.0).log_prob(z0).sum(1)
    torch.testing.assert_close(post.kl - kl_normal(m0, ls0), post.log_ratio - mc0)


# ---- weight normalisation ---------------------------------------------------------------------
@pytest.mark.parametrize("make,x", [
    (lambda nc: WNLinear(6, 5, n_classes=nc), torch.randn(4, 6)),
    (lambda nc: WNConv2d(3, 5, 3, 1, 1, n_classes=nc), torch.randn(4, 3, 6, 6)),
    (lambda nc: WNConvTranspose2d(3, 5, 4, 2, 1, n_classes=nc), torch.randn(4, 3, 6, 6)),
])
def test_conditional_weight_norm_with_one_class_equals_weight_norm(make, x):
    torch.manual_seed(0)
    plain, cond = make(0), make(1)
    with torch.no_grad():
        cond.v.copy_(plain.v)
        plain.g.uniform_(0.5, 2.0)
        plain.b.normal_()
        cond.g[0].copy_(plain.g)
        cond.b[0].copy_(plain.b)
    torch.testing.assert_close(cond(x, torch.zeros(4, dtype=torch.long)), plain(x))
    with pytest.raises(ValueError, match="labels"):
        cond(x)


def test_conditional_weight_norm_uses_per_class_gain_and_bias():
    torch.manual_seed(0)
    layer = WNConv2d(3, 4, 3, 1, 1, n_classes=2)
    with torch.no_grad():
        layer.g[1].mul_(2.0)
        layer.b[1].fill_(1.0)
    x = torch.randn(1, 3, 5, 5).repeat(2, 1, 1, 1)
    out = layer(x, torch.tensor([0, 1]))
    torch.testing.assert_close(out[1], 2 * out[0] + 1)


def test_weight_norm_normalises_per_output_unit_including_conv_transpose():
    torch.manual_seed(0)
    convt = WNConvTranspose2d(3, 5, 4, 2, 1)
    w = convt.weight()
    assert w.shape == (3, 5, 4, 4)
    torch.testing.assert_close(w.pow(2).sum(dim=(0, 2, 3)).sqrt(), convt.g.detach())
    conv = WNConv2d(3, 5, 3)
    torch.testing.assert_close(conv.weight().pow(2).sum(dim=(1, 2, 3)).sqrt(), conv.g.detach())


# ---- adversarial losses ---------------------------------------------------------------------
class LinearD(torch.nn.Module):
    def __init__(self, w: torch.Tensor):
        super().__init__()
        self.w = torch.nn.Parameter(w)

    def forward(self, x, y=None):
        return (x * self.w).flatten(1).sum(1) + 0.3


def test_gradient_penalty_is_zero_for_unit_gradient_linear_d_and_known_otherwise():
    torch.manual_seed(0)
    w = torch.randn(1, 4, 4)
    real, fake = torch.randn(6, 1, 4, 4), torch.randn(6, 1, 4, 4)
    gp = gradient_penalty(LinearD(w / w.norm()), real, fake)
    assert gp.item() == pytest.approx(0.0, abs=1e-10)
    gp3 = gradient_penalty(LinearD(3 * w / w.norm()), real, fake)      # (3 - 1)^2
    assert gp3.item() == pytest.approx(4.0, rel=1e-5)
    gp3.backward()                                                    # create_graph: D gets a gradient


def test_generator_and_discriminator_losses_known_values():
    a = torch.tensor([-2.0, 0.5, 3.0])
    d = torch.sigmoid(a)
    torch.testing.assert_close(g_loss(a), -(d.log() - (1 - d).log()).mean())
    assert d_loss(torch.zeros(4), torch.zeros(4)).item() == pytest.approx(2 * math.log(2))
    out = discriminator_losses(LinearD(torch.ones(1, 2, 2) / 2), torch.ones(3, 1, 2, 2),
                               -torch.ones(3, 1, 2, 2))
    assert out["gp"].item() == pytest.approx(0.0, abs=1e-10)
    torch.testing.assert_close(out["loss"], out["d_loss"])


# ---- nets are resolution generic ---------------------------------------------------------------
@pytest.mark.parametrize("res", [8, 16, 32, 64, 128])
def test_nets_are_resolution_generic(res):
    z = torch.randn(2, 8)
    assert Generator(3, res, 8, 2, "wn")(z).shape == (2, 3, res, res)
    x = torch.randn(2, 3, res, res)
    m0, _, feats = Encoder(3, res, 2, 8)(x)
    assert m0.shape == (2, 8) and sorted(feats) == [4 * 2 ** i for i in range(n_octaves(res))]
    assert SimpleD(3, res, 2)(x).shape == (2,)
    assert ResidualD(3, res, 2, n_classes=3)(x, torch.tensor([0, 2])).shape == (2,)


def test_bad_resolution_and_options_raise_clear_errors():
    with pytest.raises(ValueError, match="power of two"):
        Generator(1, 28, 8, 4)
    with pytest.raises(ValueError, match="sample_noise"):
        smoke_model("avade", sample_noise="noisy")
    with pytest.raises(ValueError, match="labelled"):
        smoke_model("avade-cond", data=DataSpec(1, 8, 17, 0))


# ---- bounds and evaluation side effects ------------------------------------------------------
def _ade_names():
    return [n for n in MODELS.names() if MODELS.meta(n)["config"].__module__ == "models.ade"]


@pytest.mark.parametrize("name", ["gan", "vae", "vade", "avgde", "avade", "avade-iaf-rd", "avade-cond"])
def test_nll_finite_and_importance_weighting_tightens_the_bound(name):
    torch.manual_seed(0)
    model = smoke_model(name)
    if name == "gan":
        assert model.nll(digits_batch().x) is None
        model.infer_steps_done += 1
    x = digits_batch(16).x
    elbo, iw = model.nll(x), model.nll(x, k=32)
    assert elbo.shape == (16,) and torch.isfinite(elbo).all() and torch.isfinite(iw).all()
    assert iw.mean() < elbo.mean()


def _buffers(model):
    return {k: v.clone() for k, v in model.state_dict().items() if "running" in k or "num_batches" in k}


@pytest.mark.parametrize("name", ["gan", "vade", "avade", "avade-s2"])
def test_sampling_and_evaluation_do_not_change_batchnorm_statistics(name):
    torch.manual_seed(0)
    model = smoke_model(name).train()
    model.losses(model.stages(1)[0].phases[-1], digits_batch())   # move running stats off their init
    before = _buffers(model)
    assert before, "model has no batch-norm buffers to check"
    model.sample(16)
    model.nll(digits_batch().x) if name != "gan" else None
    model.reconstruct(digits_batch().x)
    after = _buffers(model)
    assert all(torch.equal(before[k], after[k]) for k in before)
    assert all(m.training for m in model.modules())                  # train flags restored


# ---- AV-ADE options: sampling convention, adversarial gradient to psi -----------------------------
def test_samples_differ_across_z_and_sample_noise_changes_them():
    for noise in ("mean", "gaussian"):
        s = smoke_model("avade", sample_noise=noise).sample(16)
        assert s.shape == (16, 1, 8, 8) and 0 <= s.min() and s.max() <= 1
        assert s.std(dim=0).mean() > 1e-3                              # not one image repeated
    torch.manual_seed(0)
    model = smoke_model("avade", sample_noise="mean")
    with torch.no_grad():
        model.log_sigma.fill_(-1.0)
    torch.manual_seed(5)
    mean = model.sample(8)
    model.cfg.sample_noise = "gaussian"
    torch.manual_seed(5)
    noisy = model.sample(8)
    assert (mean - noisy).abs().mean() > 1e-3


def _grads(model, adv_weight, module):
    model.cfg.adv_weight = adv_weight
    model.zero_grad()
    torch.manual_seed(3)
    model.losses("gen", digits_batch())["loss"].backward()
    return torch.cat([p.grad.flatten() for p in module.parameters() if p.grad is not None])


@pytest.mark.parametrize("flow_adv_grad", [False, True])
def test_flow_adv_grad_controls_whether_l_q_reaches_psi(flow_adv_grad):
    torch.manual_seed(0)
    model = smoke_model("avade", flow_adv_grad=flow_adv_grad)
    g0, g1 = _grads(model, 0.0, model.flow), _grads(model, 100.0, model.flow)
    assert torch.allclose(g0, g1, rtol=1e-6, atol=1e-9) != flow_adv_grad      # to round-off: two graphs
    d0, d1 = _grads(model, 0.0, model.vae), _grads(model, 100.0, model.vae)
    assert not torch.equal(d0, d1)                                       # L_Q reaches the decoder
    assert all(p.grad is None for p in model.D.parameters())            # D frozen in the G step


def test_conditional_sampling_uses_labels():
    model = smoke_model("avade-cond")
    with torch.no_grad():
        for layer in model.vae.modules():
            if getattr(layer, "n_classes", 0):
                layer.b.normal_()
    torch.manual_seed(0)
    a = model.sample(6, torch.zeros(6, dtype=torch.long))
    torch.manual_seed(0)
    b = model.sample(6, torch.full((6,), 3))
    assert (a - b).abs().mean() > 1e-4
    assert model.sample(5).shape == (5, 1, 8, 8)
    assert torch.isfinite(model.nll(digits_batch().x)).all()
