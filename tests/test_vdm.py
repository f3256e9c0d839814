"""Numerics of the VDM baseline (models/vdm.py): the bound's terms against closed forms on a Gaussian toy,
the schedule invariance of the continuous-time loss, the sampler's marginal, the bound at initialisation,
the variance-minimising gradient of the schedule, the discrete decoder, and one smoke step.

Gaussian toy: x ~ N(mu, s^2 I) in D dimensions with the exact epsilon-predictor
eps_hat(z_t) = sigma_t (z_t - alpha_t mu) / (alpha_t^2 s^2 + sigma_t^2).  Per dimension, with the SNR
v = exp(-gamma) and posterior variance s^2 / (1 + v s^2), the expected diffusion loss is
1/2 int_{v_1}^{v_0} s^2 / (1 + v s^2) dv = 1/2 ln((1 + v_0 s^2) / (1 + v_1 s^2)); with the prior KL and the
continuous Gaussian decoder p(x | z_0) = N(z_0 / alpha_0, exp(gamma_0)) the expected bound exceeds the
data's entropy by exactly KL(q(z_1) || N(0, 1)) + 1/2 ln(1 + exp(gamma_0) / s^2) per dimension.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch
from scipy import integrate, special

from models import MODELS, Batch, DataSpec, bits_per_dim, quantize
from protocols.config import resolve
from models.vdm import (FixedLinearSchedule, LearnedSchedule, VDM, ancestral_sample,
                        decode_levels, default_gamma_min, diffusion_loss, discrete_recon_nll, encode,
                        prior_kl, stratified_times)

G0, G1 = -13.3, 5.0
MU, S, D = 0.3, 0.4, 4
SIG = lambda g: 1.0 / (1.0 + math.exp(-g))  # noqa: E731


@pytest.fixture(autouse=True)
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def exact_eps(mu=MU, s=S):
    def eps_fn(z, g, t):
        g = g.reshape(-1, *([1] * (z.dim() - 1)))
        a2, s2 = torch.sigmoid(-g), torch.sigmoid(g)
        return torch.sqrt(s2) * (z - torch.sqrt(a2) * mu) / (a2 * s ** 2 + s2)
    return eps_fn


def fixed(g0=G0, g1=G1):
    return FixedLinearSchedule(g0, g1).double()


def curved(g0=G0, g1=G1, seed=0):
    """A learned schedule with a strongly non-linear shape and the given endpoints."""
    torch.manual_seed(seed)
    sched = LearnedSchedule(g0, g1, features=64).double()
    with torch.no_grad():
        sched.w1.fill_(1.0)
        sched.w2.copy_(8.0 * torch.randn(64, dtype=torch.float64))
        sched.b2.copy_(4.0 * torch.randn(64, dtype=torch.float64))
        sched.w3.copy_(64.0 * torch.rand(64, dtype=torch.float64))
    return sched


def mean_se(v: torch.Tensor):
    """Mean and its standard error (i.i.d. formula: conservative for the stratified times)."""
    return float(v.mean()), float(v.std() / math.sqrt(v.numel()))


def diffusion_integrand(t: float, sched, x: np.ndarray, mu=MU, s=S) -> float:
    """gamma'(t) / 2 E_eps ||eps - eps_hat||^2 for fixed x and the exact predictor (closed form in eps)."""
    with torch.no_grad():
        g, dg = sched(torch.tensor([t], dtype=torch.float64))
    a, sg = math.sqrt(SIG(-float(g))), math.sqrt(SIG(float(g)))
    k = sg / (a * a * s * s + sg * sg)
    return 0.5 * float(dg) * float(np.sum((1.0 - k * sg) ** 2 + (k * a * (x - mu)) ** 2))


def diffusion_closed_form(x: np.ndarray, g0=G0, g1=G1, mu=MU, s=S) -> float:
    """The same integral in SNR form (see the module docstring), for fixed x."""
    v0, v1 = math.exp(-g0), math.exp(-g1)
    w0, w1 = 1.0 + v0 * s * s, 1.0 + v1 * s * s
    per = 0.5 * (x - mu) ** 2 / s ** 2 * (1 / w1 - 1 / w0) + 0.5 * (math.log(w0 / w1) + 1 / w0 - 1 / w1)
    return float(np.sum(per))


def toy_data(n, seed):
    g = torch.Generator().manual_seed(seed)
    return MU + S * torch.randn(n, D, generator=g, dtype=torch.float64)


# ---- 1. the bound against the exact NLL ------------------------------------------------------------
@pytest.mark.parametrize("g0,g1", [(G0, G1), (-3.0, 1.0)], ids=["vdm-endpoints", "loose-endpoints"])
def test_bound_exceeds_the_exact_nll_by_the_known_gap_on_gaussian_data(g0, g1):
    """VDM's endpoints make the gap tiny (0.0013 nats against a standard error of 0.06: the bound is tight);
    endpoints (-3, 1) make it 0.65 nats, so "bound > exact NLL" is tested with a visible margin."""
    torch.manual_seed(1)
    n, sched = 200_000, fixed(g0, g1)
    x = toy_data(n, 0)
    t = stratified_times(n, dtype=torch.float64)
    eps0 = torch.randn_like(x)
    recon = (0.5 * (math.log(2 * math.pi) + g0) + 0.5 * eps0 ** 2).sum(1)   # -log N(x; z_0/alpha_0, e^gamma_0)
    bound = prior_kl(x, torch.tensor(g1, dtype=torch.float64)) + diffusion_loss(x, t, sched, exact_eps()) + recon
    entropy = 0.5 * D * math.log(2 * math.pi * math.e * S * S)               # E[-log p_data(x)]
    a1, s1 = SIG(-g1), SIG(g1)
    var1 = a1 * S * S + s1
    kl1 = 0.5 * (a1 * MU * MU + var1 - 1.0 - math.log(var1))               # KL(q(z_1) || N(0, 1)) per dim
    gap = D * (kl1 + 0.5 * math.log1p(math.exp(g0) / S ** 2))
    m, se = mean_se(bound)
    assert gap > 0 and se < 0.1
    assert m >= entropy - 4 * se                     # an upper bound on the exact NLL, in expectation
    assert abs(m - (entropy + gap)) < 4 * se         # and exactly as loose as the theory says
    if gap > 10 * se:
        assert m > entropy + 5 * se


# ---- 2. the diffusion term: Monte Carlo vs closed form ----------------------------------------------
@pytest.mark.parametrize("antithetic", [True, False])
def test_diffusion_term_matches_quadrature_and_closed_form(antithetic):
    torch.manual_seed(2)
    x_one = np.array([0.9, -0.2, 0.3, -1.0])
    sched = fixed()
    quad = integrate.quad(diffusion_integrand, 0.0, 1.0, args=(sched, x_one), limit=200, epsabs=1e-10)[0]
    assert quad == pytest.approx(diffusion_closed_form(x_one), rel=1e-7)
    n = 100_000
    x = torch.tensor(x_one).expand(n, D).contiguous()
    t = stratified_times(n, dtype=torch.float64, antithetic=antithetic)
    m, se = mean_se(diffusion_loss(x, t, sched, exact_eps()))
    assert abs(m - quad) < 4 * se and se < 0.05 * quad


# ---- 5. invariance to the schedule between fixed endpoints -------------------------------------------
def test_expected_diffusion_loss_depends_only_on_the_endpoints():
    torch.manual_seed(5)
    lin, cur = fixed(), curved()
    ts = torch.linspace(0, 1, 101, dtype=torch.float64)
    with torch.no_grad():
        g_lin, g_cur = lin(ts)[0], cur(ts)[0]
    assert float((g_lin - g_cur).abs().max()) > 2.0                    # really different schedules
    assert float(g_cur[0]) == pytest.approx(G0, abs=1e-6) and float(g_cur[-1]) == pytest.approx(G1, abs=1e-6)
    x_one = np.array([0.9, -0.2, 0.3, -1.0])
    q_lin = integrate.quad(diffusion_integrand, 0, 1, args=(lin, x_one), limit=200)[0]
    q_cur = integrate.quad(diffusion_integrand, 0, 1, args=(cur, x_one), limit=400)[0]
    assert q_cur == pytest.approx(q_lin, rel=1e-5)
    n = 100_000
    x = toy_data(n, 5)
    ests = []
    for sched in (lin, cur):
        with torch.no_grad():
            ests.append(mean_se(diffusion_loss(x, stratified_times(n, dtype=torch.float64), sched, exact_eps())))
    (m1, se1), (m2, se2) = ests
    assert abs(m1 - m2) < 4 * math.hypot(se1, se2)
    expected = 0.5 * D * math.log((1 + math.exp(-G0) * S * S) / (1 + math.exp(-G1) * S * S))
    assert abs(m1 - expected) < 4 * se1 and abs(m2 - expected) < 4 * se2


def test_learned_schedule_is_monotone_with_exact_endpoints_and_derivative():
    sched = curved(-7.0, 3.0, seed=3)
    t = torch.rand(64, dtype=torch.float64, requires_grad=True)
    g, dg = sched(t)
    (auto,) = torch.autograd.grad(g.sum(), t)
    torch.testing.assert_close(dg, auto)
    assert (dg > 0).all()
    g01 = sched(torch.tensor([0.0, 1.0], dtype=torch.float64))[0]
    torch.testing.assert_close(g01, torch.tensor([-7.0, 3.0], dtype=torch.float64))
    g0, g1 = (float(v.detach()) for v in sched.endpoints())
    assert g0 == pytest.approx(-7.0) and g1 == pytest.approx(3.0)


# ---- 4. the sampler's marginal -------------------------------------------------------------------------
def test_ancestral_sampler_reproduces_the_gaussian_data():
    torch.manual_seed(4)
    n, sched = 20_000, fixed()
    z1 = torch.randn(n, D, dtype=torch.float64)
    z0 = ancestral_sample(z1, 400, sched, exact_eps())
    x = z0 / math.sqrt(SIG(-G0))                          # the continuous decoder's mean
    m, v = float(x.mean()), float(x.var())
    # sampling error of the mean over n*D values: s / sqrt(nD) = 0.0014; of the variance: s^2 sqrt(2/(nD)) = 0.0008.
    # The variance comes out low by O(1/steps) (a step uses E[x | z_t], not its spread): measured -0.046 at 25
    # steps, -0.014 at 100, -0.0044 at 400, -0.0010 at 1000.
    assert abs(m - MU) < 0.01
    assert abs(v - S * S) < 0.01
    per_dim = x.var(0)
    assert float((per_dim - S * S).abs().max()) < 0.015


# ---- the discrete decoder --------------------------------------------------------------------------------
@pytest.mark.parametrize("levels,gamma_0", [(17, default_gamma_min(17)), (17, 0.0), (256, -13.3), (256, -6.0),
                                            (5, 2.0)])
def test_discrete_decoder_window_is_the_full_softmax(levels, gamma_0):
    torch.manual_seed(6)
    x = torch.randint(0, levels, (16, 3, 4, 4))
    f = encode(x, levels, torch.float64)
    g0 = torch.tensor(gamma_0, dtype=torch.float64)
    eps0 = 3.0 * torch.randn_like(f)                      # far tails too
    got = discrete_recon_nll(x, f, g0, levels, eps0)
    scale = math.exp(0.5 * gamma_0)
    z = f + scale * eps0
    centres = encode(torch.arange(levels), levels, torch.float64)
    logp = torch.log_softmax(-0.5 * ((z[..., None] - centres) / scale) ** 2, dim=-1)
    ref = -logp.gather(-1, x[..., None].long())[..., 0].flatten(1).sum(1)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-9)
    z0 = z * math.sqrt(SIG(-gamma_0))
    assert torch.equal(decode_levels(z0, g0, levels), logp.argmax(-1))


# ---- 3. the bound at initialisation ---------------------------------------------------------------------
def expected_init_bpd(levels: int, data_std: float) -> float:
    """E[bound] / (D ln 2) for levels uniform on 0..L-1 and eps_hat = the Gaussian skip (the net is 0 at init),
    computed independently: closed forms for prior and diffusion, quadrature for the discrete decoder."""
    g0, g1 = default_gamma_min(levels), G1
    x = 2.0 * (np.arange(levels) + 0.5) / levels - 1.0
    a1, s1 = SIG(-g1), SIG(g1)
    prior = 0.5 * (a1 * np.mean(x ** 2) + s1 - math.log(s1) - 1.0)
    diff = np.mean([diffusion_closed_form(np.array([xi]), g0, g1, 0.0, data_std) for xi in x])
    e, w = np.polynomial.hermite_e.hermegauss(100)       # E over eps_0 ~ N(0, 1): Gauss-Hermite, error < 1e-8
    z = x[:, None] + math.exp(0.5 * g0) * e[None, :]       # z_0 / alpha_0 for each level and node
    nll = special.logsumexp(-0.5 * ((z[..., None] - x) / math.exp(0.5 * g0)) ** 2, axis=-1) + 0.5 * e ** 2
    recon = float(np.mean(nll @ w) / math.sqrt(2 * math.pi))
    return (prior + diff + recon) / math.log(2.0)


def smoke_vdm(data: DataSpec, **over) -> VDM:
    cfg = resolve("vdm", budget="smoke", machine=False).model_cfg
    return VDM(dataclasses.replace(cfg, **over), data)


@pytest.mark.parametrize("data", [DataSpec(1, 8, 17), DataSpec(3, 8, 256)], ids=["L17", "L256"])
def test_bound_at_initialisation_is_near_the_uniform_models(data):
    """The net's last conv is zero-initialised, so eps_hat is exactly the Gaussian skip and the expected bound on
    uniform levels is log2 L + 0.84 bit at both L: 0.29 (a Gaussian of std 0.5 against uniform levels) + 0.55 (a
    continuous predictor cannot use that x sits on bin centres while sigma_t is below a bin; gamma_min scales
    with the bin, so this is the same at every L).  The MC value must match the independent computation within
    4 standard errors, and that must lie within 1 bit above log2 L (the uniform model's value)."""
    torch.manual_seed(3)
    model = smoke_vdm(data).double()
    x = torch.randint(0, data.levels, (3000, *data.shape), dtype=torch.uint8)
    bpd = bits_per_dim(model.nll(x).double(), data.dims, data.levels)
    m, se = mean_se(bpd)
    ref = expected_init_bpd(data.levels, model.cfg.data_std)
    assert math.log2(data.levels) < ref < math.log2(data.levels) + 1.0
    assert abs(m - ref) < 4 * se + 1e-3, (m, ref, se)
    # without the skip, eps_hat = 0: the diffusion term is D (gamma_1 - gamma_0) / 2 nats, ~13 bits/dim
    bare = smoke_vdm(data, skip="none").double()
    with torch.no_grad():
        diff = bare.bound_terms(x[:500])["diff"] / (data.dims * math.log(2))
    span = (G1 - default_gamma_min(data.levels)) / (2 * math.log(2))
    assert abs(float(diff.mean()) - span) < 4 * float(diff.std()) / math.sqrt(500)


# ---- variance minimisation: which gradient reaches which parameter -----------------------------------
def test_schedule_shape_gets_the_variance_gradient_and_the_rest_the_bound():
    data = DataSpec(1, 8, 17)
    torch.manual_seed(0)
    model = smoke_vdm(data).double().train()
    x = torch.randint(0, 17, (6, 1, 8, 8), dtype=torch.uint8)
    shape_names = {"schedule.w1", "schedule.w2", "schedule.b2", "schedule.w3"}

    def grads(loss_fn, variance_min):
        model.cfg = dataclasses.replace(model.cfg, variance_min=variance_min)
        model.zero_grad(set_to_none=True)
        torch.manual_seed(11)
        loss_fn().backward()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    with_hook = grads(lambda: model.losses("main", Batch(x))["loss"], True)
    bound = grads(lambda: model.losses("main", Batch(x))["loss"], False)
    second = grads(lambda: ((model.bound_terms(x)["diff"] / data.dims) ** 2).mean(), False)
    assert shape_names <= set(with_hook) and "schedule.gamma_0" in with_hook and "schedule.log_range" in with_hook
    for name, g in with_hook.items():
        ref = second[name] if name in shape_names else bound[name]
        torch.testing.assert_close(g, ref, rtol=1e-8, atol=1e-12, msg=name)
    assert any(not torch.allclose(bound[n], second[n]) for n in shape_names)
    model.cfg = dataclasses.replace(model.cfg, variance_min=True)


# ---- smoke ----------------------------------------------------------------------------------------------
def test_registered_and_smoke_step_sample_nll():
    assert "vdm" in MODELS and MODELS.get("vdm") is VDM
    assert {"smoke", "cpu", "cpu@32", "paper"} <= set(MODELS.meta("vdm")["presets"])
    assert resolve("vdm", budget="cpu", dataset="fashion-mnist", machine=False).model_cfg.ch == 16
    data = DataSpec(1, 8, 17, 10)
    torch.manual_seed(0)
    model = smoke_vdm(data).train()
    x = torch.randint(0, 17, (8, 1, 8, 8), dtype=torch.uint8)
    out = model.losses("main", Batch(x))
    assert {"loss", "bpd", "diff", "prior", "recon"} <= set(out)
    assert all(torch.isfinite(v) for v in out.values())
    assert float(out["bpd"]) == pytest.approx(float(out["diff"] + out["prior"] + out["recon"]), rel=1e-5)
    out["loss"].backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
    u = model.sample(4)
    assert u.shape == (4, 1, 8, 8) and 0 <= float(u.min()) and float(u.max()) <= 1
    torch.testing.assert_close(quantize(u, 17).float(), u * 17 - 0.5)   # (k + 0.5) / L
    assert model.training                                                  # sample/nll restore the mode
    nll = model.nll(x, k=3)
    assert nll.shape == (8,) and torch.isfinite(nll).all()
    assert smoke_vdm(data, nll_samples=2).nll(x, k=2).shape == (8,)
    assert model.nfe_per_sample == model.cfg.sample_steps
    with pytest.raises(ValueError, match="unconditional"):
        model.sample(2, labels=torch.zeros(2, dtype=torch.long))
    with pytest.raises(ValueError, match="integer"):
        model.nll(x.float())


def test_loss_is_finite_at_step_zero_for_cifar_shaped_data():
    torch.manual_seed(0)
    data = DataSpec(3, 32, 256)
    model = smoke_vdm(data)
    out = model.losses("main", Batch(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8)))
    assert all(torch.isfinite(v) for v in out.values()) and float(out["bpd"]) > 0
    out["loss"].backward()


def test_checkpoint_round_trip_gives_identical_samples_and_bounds(tmp_path):
    data = DataSpec(1, 8, 17)
    torch.manual_seed(0)
    model = smoke_vdm(data)
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    x = torch.randint(0, 17, (8, 1, 8, 8), dtype=torch.uint8)
    model.losses("main", Batch(x))["loss"].backward()
    opt.step()
    torch.save(model.state_dict(), tmp_path / "ckpt.pt")
    clone = smoke_vdm(data)
    clone.load_state_dict(torch.load(tmp_path / "ckpt.pt", weights_only=True))
    for fn in (lambda m: m.sample(4), lambda m: m.nll(x)):
        torch.manual_seed(7)
        a = fn(model)
        torch.manual_seed(7)
        assert torch.equal(a, fn(clone))
