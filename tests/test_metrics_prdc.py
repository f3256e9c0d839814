"""Chunked precision/recall/density/coverage (metrics/prdc.py) against the prdc package."""
import contextlib
import io

import numpy as np
import prdc
import pytest

import metrics.prdc as chunked
from metrics import keys
from metrics.features import Features
from metrics.suite import prdc_k5


def _reference(real, fake, k):
    with contextlib.redirect_stdout(io.StringIO()):   # prdc prints the set sizes
        return prdc.compute_prdc(real, fake, k)


@pytest.mark.parametrize("n_real,n_fake,d,k,shift", [(200, 150, 8, 5, 0.3), (120, 300, 32, 3, 1.0),
                                                     (60, 60, 2, 5, 0.0)])
def test_equals_prdc_package(n_real, n_fake, d, k, shift):
    rng = np.random.RandomState(n_real + d)
    real, fake = rng.randn(n_real, d), rng.randn(n_fake, d) * 1.2 + shift
    ref = _reference(real, fake, k)
    ours = chunked.compute_prdc(real, fake, nearest_k=k)
    assert ours == {name: float(v) for name, v in ref.items()}


def test_block_size_does_not_change_values(monkeypatch):
    rng = np.random.RandomState(3)
    real, fake = rng.randn(97, 5), rng.randn(83, 5) + 0.2
    full = chunked.compute_prdc(real, fake)
    monkeypatch.setattr(chunked, "BLOCK_ELEMENTS", 500)    # blocks of 5-6 rows
    assert chunked.compute_prdc(real, fake) == full


def test_convention_mode_collapse_is_precise_not_recalling():
    # torch-fidelity's PRC convention test: fakes ~ 0.1 N(0, I) inside reals ~ 3 N(0, I)
    rng = np.random.RandomState(0)
    real, fake = 3 * rng.randn(500, 4), 0.1 * rng.randn(500, 4)
    r = chunked.compute_prdc(real, fake)
    assert r["precision"] > 0.8 and r["recall"] < 0.3


def test_strict_inequality_gives_zero_for_duplicated_points():
    # prdc issue #7: with '<' identical duplicated features are never inside a ball of radius 0
    pts = np.repeat(np.random.RandomState(1).randn(10, 3), 7, axis=0)
    r = chunked.compute_prdc(pts, pts.copy(), nearest_k=5)
    assert r["density"] == 0.0 and r["coverage"] == 0.0
    assert r == {name: float(v) for name, v in _reference(pts, pts.copy(), 5).items()}


def test_registered_prdc_uses_k5_and_keys():
    rng = np.random.RandomState(2)
    real, fake = rng.randn(80, 6), rng.randn(70, 6)
    out = prdc_k5(Features(fake, None, "x"), Features(real, None, "x"), 0)
    ref = _reference(real, fake, 5)
    assert out == {keys.PRECISION: ref["precision"], keys.RECALL: ref["recall"], keys.DENSITY: ref["density"],
                   keys.COVERAGE: ref["coverage"]}


def test_too_few_points_raise():
    with pytest.raises(ValueError, match="k=5"):
        chunked.compute_prdc(np.zeros((4, 2)), np.zeros((10, 2)))
