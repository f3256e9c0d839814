"""The speed changes (benchmarks/README.md) compute what the code before them computed.

Each fast path is compared with the computation it replaced, kept here verbatim as the reference, on the same
weights, inputs and random draws, to float tolerance (oneDNN picks other algorithms for channels-last and
batched convolutions, and threads change summation orders, so nothing is compared bit for bit):

* :func:`models.layers.elu` against ``F.elu`` (values, gradients, double backward);
* :func:`models.layers.randn_like` against ``torch.randn_like`` (the same numbers for contiguous tensors; the
  same layout and distribution for channels-last ones);
* a weight-normalised layer's first ``n_out`` units against the full layer; :func:`models.layers.weight_cache`;
* the decoder's prior pass (half of each head) against the full heads;
* the s/t network run channels-last against NCHW; cached checkerboard masks;
* one discriminator forward over reals and fakes against two;
* whole models: the losses of step 0 and their gradients, every phase, and ``sample`` / ``nll`` for a fixed
  seed, with every reference patched in (:func:`reference_code`) against the code as it is.
"""
from __future__ import annotations

import contextlib

import pytest
import torch
import torch.nn.functional as F

import models.ade
import models.adversarial
import models.flow_models
import models.hvae
import models.nets
from models.adversarial import discriminator_losses
from models.discriminators import ResidualD, SimpleD
from models.flows import CheckerboardCoupling, STNet, checkerboard
from models.hvae import TopDownVAE
from models.layers import (ARConv2d, WNConv2d, WNConvTranspose2d, WNLinear, elu, eval_mode, fast_inference,
                           randn_like, weight_cache)
from test_models_numerics import DATA, digits_batch, one_thread, smoke_model  # noqa: F401 (fixture)

TOL = dict(rtol=1e-5, atol=1e-5)


# ---- the code before the speed changes (reference) --------------------------------------------------------
def _ref_prior_mean(self, n, labels=None, device=None):
    device = device or self.fc.v.device
    h = self._top(torch.randn(n, self.z_dim, device=device), labels)
    L = self.latent_ch
    for i in range(len(self.lat_rs)):
        pm, pls, _, _, _ = self.dec_heads[i](h, labels).split([L, L, L, L, self.ctx], dim=1)
        h = self._up(i, h, pm + torch.exp(pls) * torch.randn_like(pm), labels)
    return self._mean(h, labels)


def _ref_stnet_forward(self, x):
    x = self.in_norm(x)
    if self.double:
        x = 2.0 * x
    h = self.in_conv(F.relu(torch.cat([x, -x], 1)))
    skip = self.in_skip(h)
    for block, conv in zip(self.blocks, self.skips):
        h = block(h)
        skip = skip + conv(h)
    return self.out_conv(F.relu(self.out_norm(skip)))


def _ref_masked_st(self, x):
    b = checkerboard(x, self.parity)
    s, t = self._st(x * b)
    return s * (1 - b), t * (1 - b)


def _ref_logits_of_both(disc, real, fake, real_labels, fake_labels):
    return disc(real, real_labels), disc(fake, fake_labels)


def _no_cache(module):
    return contextlib.nullcontext()


@pytest.fixture
def reference_code(monkeypatch):
    """Patch every speed change back to the computation it replaced (the sampling/likelihood context back to
    ``eval_mode`` under the methods' ``no_grad``; the flows' ``sample`` back to no context)."""
    def apply():
        monkeypatch.setattr(models.hvae, "elu", F.elu)
        monkeypatch.setattr(models.nets, "elu", F.elu)
        monkeypatch.setattr(TopDownVAE, "prior_mean", _ref_prior_mean)
        monkeypatch.setattr(STNet, "forward", _ref_stnet_forward)
        monkeypatch.setattr(CheckerboardCoupling, "_masked_st", _ref_masked_st)
        monkeypatch.setattr(models.adversarial, "_logits_of_both", _ref_logits_of_both)
        monkeypatch.setattr(models.ade, "weight_cache", _no_cache)
        monkeypatch.setattr(models.ade, "fast_inference", eval_mode)
        monkeypatch.setattr(models.flow_models, "fast_inference", _no_cache)
    return apply


def assert_grads_close(ours, ref, rtol=1e-4):
    """Two lists of gradients equal up to ``rtol`` of the largest gradient entry of the list: a parameter whose
    gradient cancels to ~0 (a bias before a train-mode batch norm) carries rounding noise of the size of the
    other terms, not of its own."""
    scale = max(float(b.abs().max()) for b in ref if b is not None) + 1e-30
    for a, b in zip(ours, ref):
        if b is None:
            assert a is None
            continue
        err = float((a - b).abs().max())
        assert err <= rtol * scale, f"gradient differs by {err:.3g}, largest gradient entry {scale:.3g}"


def seeded(seed, fn, *args, **kwargs):
    torch.manual_seed(seed)
    return fn(*args, **kwargs)


# ---- noise --------------------------------------------------------------------------------------------------
def test_randn_like_keeps_the_layout_and_draws_contiguous_noise_unchanged():
    nchw = torch.empty(4, 6, 5, 3)
    cl = torch.empty(4, 12, 5, 3).to(memory_format=torch.channels_last)
    for t in (nchw, nchw[:, :3], torch.empty(7, 9), torch.empty(4, 1, 5, 3).to(memory_format=torch.channels_last)):
        assert torch.equal(seeded(3, randn_like, t), seeded(3, torch.randn_like, t))
    for t in (cl, cl[:, :6], cl[:, 6:]):              # channels-last, and channel slices of it (the decoder heads)
        ours, ref = seeded(3, randn_like, t), seeded(3, torch.randn_like, t)
        assert ours.shape == ref.shape and ours.stride() == ref.stride() and ours.dtype == t.dtype
        assert ours.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(ours, seeded(3, torch.randn, 4, 5, 3, t.shape[1]).permute(0, 3, 1, 2))
    big = seeded(1, randn_like, torch.empty(64, 32, 16, 16).to(memory_format=torch.channels_last)).flatten()
    assert abs(float(big.mean())) < 0.01 and abs(float(big.std()) - 1) < 0.01      # 524,288 draws: >= 7 s.e.
    assert seeded(3, randn_like, cl.bfloat16()).dtype == torch.bfloat16


# ---- ELU ----------------------------------------------------------------------------------------------------
def test_elu_matches_torch_values_gradients_and_double_backward():
    x = torch.cat([torch.linspace(-30, 30, 2001), torch.tensor([0.0, -1e-7, 1e-7, -1e-3, 88.0, -88.0])])
    torch.testing.assert_close(elu(x), F.elu(x), rtol=0, atol=2e-7)
    xr = x.clone().requires_grad_()
    g = torch.randn_like(x)
    (ours,) = torch.autograd.grad(elu(xr), xr, g)
    (ref,) = torch.autograd.grad(F.elu(xr), xr, g)
    torch.testing.assert_close(ours, ref, rtol=1e-6, atol=2e-7)
    x64 = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(elu, (x64,))
    assert torch.autograd.gradgradcheck(elu, (x64,))
    cl = torch.randn(2, 3, 4, 4).contiguous(memory_format=torch.channels_last)
    assert elu(cl).is_contiguous(memory_format=torch.channels_last)


# ---- weight-normalised layers: n_out and the weight cache ---------------------------------------------------
@pytest.mark.parametrize("make,x", [
    (lambda nc: WNLinear(6, 10, n_classes=nc), torch.randn(4, 6)),
    (lambda nc: WNConv2d(3, 10, 3, 1, 1, n_classes=nc, init_scale=0.1), torch.randn(4, 3, 5, 5)),
    (lambda nc: WNConvTranspose2d(3, 10, 4, 2, 1, n_classes=nc), torch.randn(4, 3, 5, 5)),
    (lambda nc: ARConv2d(5, 10, 3, zerodiag=True) if nc == 0 else None, torch.randn(4, 5, 5, 5)),
])
@pytest.mark.parametrize("n_classes", [0, 3])
def test_first_n_out_units_equal_the_full_layer_sliced(make, x, n_classes):
    layer = make(n_classes)
    if layer is None:
        pytest.skip("AR convs are unconditional")
    with torch.no_grad():
        for p in layer.parameters():
            p.add_(0.3 * torch.randn_like(p))
    y = torch.tensor([0, 2, 1, 2]) if n_classes else None
    full = layer(x, y) if n_classes else layer(x)
    torch.testing.assert_close(layer(x, y, n_out=4), full[:, :4], **TOL)


def test_weight_cache_computes_once_keeps_gradients_and_follows_updates():
    layer = WNConv2d(3, 8, 3, 1, 1)
    x = torch.randn(2, 3, 6, 6)
    ref = layer(x).square().sum() + layer(2 * x).sum()
    ref_grads = torch.autograd.grad(ref, list(layer.parameters()))
    with weight_cache(layer):
        assert layer.weight() is layer.weight()
        out = layer(x).square().sum() + layer(2 * x).sum()
        grads = torch.autograd.grad(out, list(layer.parameters()))
        with torch.no_grad():
            assert layer.weight() is not layer.weight(4)
            stale = layer.weight()
            layer.v.add_(1.0)                       # an optimiser step bumps the version: recomputed
            assert not torch.equal(layer.weight(), stale)
    assert layer._cache is None
    torch.testing.assert_close(out, ref)
    for a, b in zip(grads, ref_grads):
        torch.testing.assert_close(a, b)


# ---- blocks: prior pass, s/t net, masks, discriminator losses ----------------------------------------------
@pytest.mark.parametrize("kw", [{}, {"n_classes": 3}, {"iaf": True, "iaf_hidden": 8}])
def test_prior_pass_with_half_heads_matches_full_heads(kw):
    torch.manual_seed(0)
    vae = TopDownVAE(1, 16, width=4, z_dim=6, latent_ch=4, enc_width=4, **kw)
    with torch.no_grad():
        for p in vae.parameters():
            p.add_(0.2 * torch.randn_like(p))
    labels = torch.tensor([0, 1, 2, 1, 0]) if kw.get("n_classes") else None
    ref = seeded(3, _ref_prior_mean, vae, 5, labels)
    torch.testing.assert_close(seeded(3, vae.prior_mean, 5, labels), ref, **TOL)


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("c", [1, 3])
def test_st_net_channels_last_matches_nchw(train, c):
    torch.manual_seed(0)
    net = STNet(c, c, 8, 2, double_after_norm=True).train(train)
    with torch.no_grad():
        for p in net.parameters():
            p.add_(0.1 * torch.randn_like(p))
        net.train()(torch.randn(16, c, 8, 8))        # non-trivial running statistics
    net.train(train)
    x = torch.randn(6, c, 8, 8, requires_grad=True)
    params = [x, *net.parameters()]
    ours = net(x)
    ref = _ref_stnet_forward(net, x)
    torch.testing.assert_close(ours, ref, **TOL)
    assert_grads_close(torch.autograd.grad(ours.square().sum(), params),
                       torch.autograd.grad(ref.square().sum(), params))


def test_cached_checkerboard_masks_equal_fresh_ones():
    layer = CheckerboardCoupling(2, 4, 1, parity=1)
    for dtype in (torch.float32, torch.float64):
        x = torch.randn(3, 2, 6, 4, dtype=dtype)
        b, nb = layer._masks(x)
        torch.testing.assert_close(b, checkerboard(x, 1))
        torch.testing.assert_close(nb, 1 - checkerboard(x, 1))
        assert layer._masks(x)[0] is b
    with torch.inference_mode():
        assert layer._masks(x)[0] is not b           # inference tensors are kept apart


@pytest.mark.parametrize("disc,n_classes", [(SimpleD, 0), (ResidualD, 0), (SimpleD, 10), (ResidualD, 10)])
def test_one_discriminator_forward_over_both_batches_matches_two(disc, n_classes, monkeypatch):
    torch.manual_seed(0)
    D = disc(3, 16, 8, n_classes)
    real, fake = torch.randn(6, 3, 16, 16), torch.randn(6, 3, 16, 16)
    ys = (torch.randint(0, 10, (6,)), torch.randint(0, 10, (6,))) if n_classes else (None, None)
    ours = seeded(1, discriminator_losses, D, real, fake, 10.0, *ys)
    grads = torch.autograd.grad(ours["loss"], list(D.parameters()))
    monkeypatch.setattr(models.adversarial, "_logits_of_both", _ref_logits_of_both)
    ref = seeded(1, discriminator_losses, D, real, fake, 10.0, *ys)
    for k in ref:
        torch.testing.assert_close(ours[k], ref[k], **TOL)
    assert_grads_close(grads, torch.autograd.grad(ref["loss"], list(D.parameters())))


# ---- whole models -----------------------------------------------------------------------------------------------
MODELS_COMPARED = ["gan", "gan-cond", "vae", "vade", "avgde", "avade", "avade-cond", "avade-iaf-rd", "avade-s2"]


def _scrambled(name):
    torch.manual_seed(0)
    model = smoke_model(name)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.train()


def _step0(model, batch):
    """Every phase of the first stage, in order, with its losses and the gradients of its parameters."""
    out = {}
    for phase in model.stages(1)[0].phases:
        params = [p for p in model.phase_parameters(phase) if p.requires_grad]
        losses = seeded(11, model.losses, phase, batch)
        grads = torch.autograd.grad(losses["loss"], params, allow_unused=True)
        out[phase] = ({k: v.detach() for k, v in losses.items()}, grads)
    return out


@pytest.mark.parametrize("name", MODELS_COMPARED)
def test_step0_losses_and_gradients_equal_the_reference_code(name, reference_code):
    model, batch = _scrambled(name), digits_batch(8)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    ours = _step0(model, batch)
    model.load_state_dict(state)                       # batch-norm statistics moved; put them back
    reference_code()
    ref = _step0(model, batch)
    for phase, (losses, grads) in ref.items():
        for k, v in losses.items():
            torch.testing.assert_close(ours[phase][0][k], v, **TOL, msg=f"{name} {phase} {k}")
        assert_grads_close(ours[phase][1], grads)


@pytest.mark.parametrize("name", MODELS_COMPARED)
def test_samples_and_bounds_for_a_fixed_seed_equal_the_reference_code(name, reference_code):
    model, batch = _scrambled(name), digits_batch(8)
    model.losses(model.phases[-1], batch)              # batch-norm running statistics off their init
    labels = torch.arange(6) % 10 if model.conditional else None
    ours = seeded(5, model.sample, 6, labels)
    ours_nll = seeded(6, model.nll, batch.x, 2) if name not in ("gan", "gan-cond") else None
    reference_code()
    torch.testing.assert_close(ours, seeded(5, model.sample, 6, labels), **TOL)
    if ours_nll is not None:
        torch.testing.assert_close(ours_nll, seeded(6, model.nll, batch.x, 2), **TOL)
    with fast_inference(model):
        assert not torch.is_grad_enabled()
