"""FLD, the feature likelihood divergence, and its train-vs-test gap (Jiralerspong et al., NeurIPS 2023,
arXiv:2302.04440; marcojira/fld ``fld/metrics/FLD.py`` and ``fld/MoG.py``).

Every set is standardised by the test set's per-dimension mean and std (unbiased).  A mixture of isotropic
Gaussians is centred on the generated samples (at most ``GEN_SIZE``, a seeded subset), one variance per
component, fitted by maximum likelihood to the training features: Adam (lr 0.5) for 50 epochs over batches
of 10,000, log-variances started at log((min squared distance to a training point + 1e-3) / d) and clamped
to [-40, 20], with an extra component at the training mean (distances scaled by 0.9^2, its own variance)
that bounds every point's likelihood during the fit only (gradients in closed form, :meth:`Mixture._grads`: the
values autograd gives the reference, ~10x faster on 10k x 5k).  With NLL(x) = -log p(x) / d (dimension-adjusted):

    FLD = 100 (mean NLL(test) - baseline),   gap = 100 (mean NLL(train) - mean NLL(test))

where the baseline is the test NLL under the same kind of mixture centred on a random half of the training
set (as many components as samples, at most half the set) and fitted to the other half.  FLD: lower is
better.  The gap is ~0 for a model that generalises and strongly negative when the samples copy the
training set (the mixture then explains its training points far better than held-out ones).
The reference draws its subsets and batch order from numpy's global RNG; here a ``seed`` fixes them, so
one seed gives one value and another seed a value within the reference's seed-to-seed spread
(tests/test_metrics_modern.py).  One fit of the sample-centred mixture serves both numbers.
"""
from __future__ import annotations

import math
from typing import Tuple

import numpy as np
import torch

GEN_SIZE = 10_000       # generated samples used (the reference's GEN_SIZE)
LR, EPOCHS, BATCH = 0.5, 50, 10_000
ORIGIN_SHRINK = (1 - 0.1) ** 2
LOG_VAR_CLAMP = (-40.0, 20.0)


def _standardise(train, test, fake):
    mean, std = test.mean(0), test.std(0)
    std = torch.where(std > 0, std, torch.ones_like(std))     # a constant dimension stays finite (reference: nan)
    return [(x - mean) / std for x in (train, test, fake)]


def _sq_dists(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    return torch.cdist(x, centres) ** 2


def _pairwise_ll(d2: torch.Tensor, log_var: torch.Tensor, dim: int) -> torch.Tensor:
    return -0.5 * d2 / log_var.exp() - 0.5 * dim * log_var - 0.5 * dim * math.log(2 * math.pi)


class Mixture:
    """Isotropic Gaussians on ``centres`` with one fitted log-variance each (the reference's ``MoG``)."""

    def __init__(self, centres: torch.Tensor):
        self.centres, self.dim = centres, centres.shape[1]
        self.log_var = torch.zeros(len(centres))

    @torch.no_grad()
    def fit(self, x: torch.Tensor, rng: np.random.Generator) -> "Mixture":
        x = x[torch.as_tensor(rng.permutation(len(x)))]
        d2 = _sq_dists(x, self.centres)
        log_var = ((d2.min(0).values + 1e-3) / self.dim).log()
        origin_log_var = torch.zeros(())
        origin_d2 = ORIGIN_SHRINK * _sq_dists(x, x.mean(0, keepdim=True))
        opt = torch.optim.Adam([log_var, origin_log_var], lr=LR)
        buf = torch.empty(min(BATCH, len(x)), len(self.centres))
        for _ in range(EPOCHS):
            for s in range(0, len(x), BATCH):
                log_var.grad, origin_log_var.grad = self._grads(d2[s:s + BATCH], origin_d2[s:s + BATCH], log_var,
                                                                origin_log_var, buf)
                opt.step()
                log_var.clamp_(*LOG_VAR_CLAMP)
        self.log_var = log_var
        return self

    def _grads(self, d2, origin_d2, log_var, origin_log_var, buf):
        """Gradients of the batch loss -mean_i log(sum_j p_j(x_i) + p_origin(x_i)) / d with respect to the
        log-variances, in closed form (d/ds_j = -(1/(n d)) sum_i r_ij (d2_ij e^-s_j / 2 - d / 2), r the
        responsibilities): what autograd gives the reference, computed in one reused buffer (an order of
        magnitude faster than autograd's graph on 10k x 5k)."""
        n, d = len(d2), self.dim
        inv = torch.exp(-log_var)
        r = torch.mul(d2, -0.5 * inv, out=buf[:n])
        r += -0.5 * d * log_var - 0.5 * d * math.log(2 * math.pi) - math.log(len(self.centres))
        origin = _pairwise_ll(origin_d2, origin_log_var, d)                    # n x 1
        top = torch.maximum(r.amax(1, keepdim=True), origin)
        r.sub_(top).exp_()
        e_origin = (origin - top).exp()
        total = r.sum(1, keepdim=True) + e_origin
        r.div_(total)
        r_origin = e_origin / total
        r_sum = r.sum(0)
        grad = -(0.5 * inv * r.mul_(d2).sum(0) - 0.5 * d * r_sum) / (n * d)
        r_origin_d2 = (r_origin * origin_d2).sum()
        grad_origin = -(0.5 * torch.exp(-origin_log_var) * r_origin_d2 - 0.5 * d * r_origin.sum()) / (n * d)
        return grad, grad_origin

    @torch.no_grad()
    def nll(self, x: torch.Tensor) -> float:
        """Mean dimension-adjusted negative log-likelihood of the rows of ``x``."""
        ll = _pairwise_ll(_sq_dists(x, self.centres), self.log_var, self.dim) - math.log(len(self.centres))
        return float((-torch.logsumexp(ll, 1) / self.dim).double().mean())


def _as_tensor(x) -> torch.Tensor:
    return torch.as_tensor(np.asarray(x, dtype=np.float32))


def compute_fld(train_features, test_features, fake_features, *, seed: int = 0) -> Tuple[float, float]:
    """(FLD, train-vs-test NLL gap) of the samples, float32 as the reference."""
    train, test, fake = (_as_tensor(f) for f in (train_features, test_features, fake_features))
    if len(train) < 4 or len(test) < 2 or len(fake) < 2:
        raise ValueError(f"FLD needs at least 4 training, 2 test and 2 generated points, got {len(train)}, "
                         f"{len(test)}, {len(fake)}")
    rng = np.random.default_rng(seed)
    if len(fake) > GEN_SIZE:
        fake = fake[torch.as_tensor(rng.choice(len(fake), GEN_SIZE, replace=False))]
    train, test, fake = _standardise(train, test, fake)
    model = Mixture(fake).fit(train, rng)
    test_nll = model.nll(test)
    gap = 100 * (model.nll(train) - test_nll)
    shuffled = train[torch.as_tensor(rng.permutation(len(train)))]
    split = min(len(fake), len(train) // 2)
    baseline = Mixture(shuffled[:split]).fit(shuffled[split:], rng).nll(test)
    return 100 * (test_nll - baseline), gap
