"""Held-out BPD (metrics/bpd.py): uniform model, bounds, batching, seeding, bad inputs."""
import math

import pytest
import torch
from torch import nn

from metrics import keys
from metrics.bpd import heldout_bpd, heldout_bpd_bounds
from models.base import bits_per_dim, dequantize


class Uniform(nn.Module):
    """Uniform density on [0, 1)^D: nll = 0 for every image."""

    def nll(self, x, k=1):
        return torch.zeros(x.shape[0])


class NoDensity:
    def nll(self, x, k=1):
        return None


class Gaussianish(nn.Module):
    """nll depends on the dequantised image and on k (fresh noise inside, as the contract says)."""

    def __init__(self, levels):
        super().__init__()
        self.levels, self.w = levels, nn.Parameter(torch.tensor(0.5))
        self.calls = []

    def nll(self, x, k=1):
        self.calls.append((x.shape[0], k, self.training))
        u = dequantize(x, self.levels)
        return (self.w * (u - 0.5) ** 2).flatten(1).sum(1) - math.log(k)


def _images(n=37, levels=17, shape=(1, 4, 4), seed=0):
    return torch.randint(0, levels, (n, *shape), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


@pytest.mark.parametrize("levels", [2, 17, 256])
def test_uniform_model_scores_log2_levels(levels):
    value = heldout_bpd(Uniform(), _images(levels=levels), levels)
    assert value == bits_per_dim(0.0, 16, levels)          # exact: the NLL is a sum of exact zeros
    assert value == pytest.approx(math.log2(levels), rel=1e-14)


def test_no_density_gives_none():
    assert heldout_bpd(NoDensity(), _images(), 17) is None
    assert heldout_bpd_bounds(NoDensity(), _images(), 17) == {keys.BPD: None, keys.BPD_IW: None}


def test_bounds_use_k_and_levels_and_batches():
    model, x = Gaussianish(17), _images()
    model.train()
    out = heldout_bpd_bounds(model, x, 17, k_iw=4, batch_size=8, seed=3)
    assert set(out) == {keys.BPD, keys.BPD_IW}
    assert out[keys.BPD_IW] == pytest.approx(out[keys.BPD] - math.log(4) / (16 * math.log(2)), abs=1e-3)
    assert {c[1] for c in model.calls} == {1, 4}
    assert max(c[0] for c in model.calls if c[1] == 4) == 2            # batch_size counts image x sample pairs
    assert not any(c[2] for c in model.calls) and model.training        # eval inside, training mode restored


def test_seeded_noise_is_reproducible_and_batch_independent():
    x = _images(n=50)
    a = heldout_bpd(Gaussianish(17), x, 17, batch_size=50, seed=1)
    assert a == pytest.approx(heldout_bpd(Gaussianish(17), x, 17, batch_size=50, seed=1), rel=1e-12)
    assert a != heldout_bpd(Gaussianish(17), x, 17, batch_size=50, seed=2)       # fresh noise per seed
    assert heldout_bpd(Gaussianish(17), x, 17, batch_size=7, seed=1) == pytest.approx(a, abs=0.02)


def test_rejects_float_images_and_bad_k():
    with pytest.raises(ValueError, match="uint8"):
        heldout_bpd(Uniform(), torch.rand(3, 1, 4, 4), 17)
    with pytest.raises(ValueError, match="k"):
        heldout_bpd(Uniform(), _images(), 17, k=0)
