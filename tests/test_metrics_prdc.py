"""Chunked precision/recall/density/coverage (metrics/prdc.py) against the prdc package.

Exact equality with prdc is asserted only on data where scikit-learn's distance arithmetic is itself
exact (integer or dyadic features: every product, sum and square root is correctly rounded whatever
the BLAS, block shape or thread count), so ties at a radius fall the same way in both.  On
continuous data, the two expansions round differently, and a pair within round-off of a radius may
flip: those comparisons allow one flipped point.
"""
import contextlib
import io

import numpy as np
import prdc
import pytest
import torch
from threadpoolctl import threadpool_limits

import metrics.prdc as chunked
from metrics import keys
from metrics.features import Features
from metrics.suite import DEFAULT_PARAMS, prdc_k_nearest


def _reference(real, fake, k):
    with contextlib.redirect_stdout(io.StringIO()):   # prdc prints the set sizes
        return {name: float(v) for name, v in prdc.compute_prdc(real, fake, k).items()}


@pytest.fixture(params=[1, 2], ids=["1thread", "2threads"])
def threads(request):
    """Torch and BLAS (numpy / scikit-learn) limited to 1 or 2 threads; restored afterwards."""
    before = torch.get_num_threads()
    torch.set_num_threads(request.param)
    try:
        with threadpool_limits(limits=request.param):
            yield request.param
    finally:
        torch.set_num_threads(before)


def _grey_levels(rng, n, d):
    """Integer features in 0..16 (17 grey levels) in few dimensions: many exact duplicates."""
    return rng.randint(0, 17, (n, d)).astype(np.float64)


def _exact_cases():
    rng = np.random.RandomState(0)
    grey = (_grey_levels(rng, 240, 2), _grey_levels(rng, 200, 2) + rng.randint(0, 2, (200, 2)))
    dyadic = tuple(np.repeat(rng.randint(-8, 8, (n, 5)) / 4, 3, axis=0) for n in (50, 40))
    real = _grey_levels(rng, 150, 8)
    collapsed = (real, np.repeat(real[[3, 17, 42, 99, 120]], 24, axis=0))      # a generator stuck on 5 images
    repeated = np.repeat(_grey_levels(rng, 12, 3), 7, axis=0)                  # 7 copies of each point, k = 5
    return {"17-levels": (*grey, 5), "dyadic": (*dyadic, 3), "collapsed": (*collapsed, 5),
            "collapsed-k1": (*collapsed, 1), "all-duplicated": (repeated, repeated[::-1].copy(), 5),
            "float32": (grey[0].astype(np.float32), grey[1].astype(np.float32), 5)}


EXACT = _exact_cases()


@pytest.mark.parametrize("case", sorted(EXACT))
def test_equals_prdc_package_exactly_on_duplicate_heavy_data(case, threads):
    real, fake, k = EXACT[case]
    assert chunked.compute_prdc(real, fake, nearest_k=k) == _reference(real, fake, k)


def test_duplicated_points_are_at_distance_exactly_zero(threads):
    # continuous features, each repeated 7 times: with k = 5 every radius is 0, and with prdc's strict
    # '<' (prdc issue #7) no point is inside any ball, whatever round-off the matmul leaves
    pts = np.repeat(np.random.RandomState(1).randn(10, 3) * 100, 7, axis=0)
    r = chunked.compute_prdc(pts, pts[::-1].copy(), nearest_k=5)
    assert r == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    other = pts[::-1].copy()
    a, b = (chunked._Points.of(x, i, None) for x, i in zip((pts, other), chunked.row_ids(pts, other)))
    d = chunked.distances(a, b)
    same = torch.as_tensor((pts[:, None] == other[None, :]).all(-1))
    assert (d[same] == 0).all() and (d[~same] > 0).all()


def test_row_ids_number_distinct_rows_and_merge_signed_zeros():
    a = np.array([[0.0, 1.0], [1.0, 2.0], [0.0, 1.0], [1.0, 1.0]])
    b = np.array([[-0.0, 1.0], [3.0, 3.0], [-1.0, -1.0]])      # [1, 1] and [-1, -1] share a hash: told apart
    ia, ib = chunked.row_ids(a, b)
    assert ia[0] == ia[2] == ib[0] and len({ia[0], ia[1], ia[3], ib[1], ib[2]}) == 5


@pytest.mark.parametrize("n_real,n_fake,d,k,shift", [(200, 150, 8, 5, 0.3), (120, 300, 32, 3, 1.0),
                                                     (60, 60, 2, 5, 0.0)])
def test_agrees_with_prdc_package_on_continuous_data(n_real, n_fake, d, k, shift):
    rng = np.random.RandomState(n_real + d)
    real, fake = rng.randn(n_real, d), rng.randn(n_fake, d) * 1.2 + shift
    ours, ref = chunked.compute_prdc(real, fake, nearest_k=k), _reference(real, fake, k)
    # different float64 expansions: at most one point may sit within round-off of a radius
    assert ours == pytest.approx(ref, abs=1.0 / min(n_real, n_fake))


def test_block_size_does_not_change_values(monkeypatch):
    rng = np.random.RandomState(3)
    real, fake = _grey_levels(rng, 97, 5), _grey_levels(rng, 83, 5)     # exact arithmetic: any block shape
    full = chunked.compute_prdc(real, fake)
    monkeypatch.setattr(chunked, "TILE", 7)                # tiles of at most 7 x 7
    assert chunked.compute_prdc(real, fake) == full


def test_convention_mode_collapse_is_precise_not_recalling():
    # torch-fidelity's PRC convention test: fakes ~ 0.1 N(0, I) inside reals ~ 3 N(0, I)
    rng = np.random.RandomState(0)
    real, fake = 3 * rng.randn(500, 4), 0.1 * rng.randn(500, 4)
    r = chunked.compute_prdc(real, fake)
    assert r["precision"] > 0.8 and r["recall"] < 0.3


def test_registered_prdc_uses_k5_and_keys():
    rng = np.random.RandomState(2)
    real, fake = _grey_levels(rng, 80, 6), _grey_levels(rng, 70, 6)
    out = prdc_k_nearest(Features(fake, None, "x"), Features(real, None, "x"), 0, DEFAULT_PARAMS)
    ref = _reference(real, fake, 5)
    assert out == {keys.PRECISION: ref["precision"], keys.RECALL: ref["recall"], keys.DENSITY: ref["density"],
                   keys.COVERAGE: ref["coverage"]}


def test_too_few_points_raise():
    with pytest.raises(ValueError, match="k=5"):
        chunked.compute_prdc(np.zeros((4, 2)), np.zeros((10, 2)))


def test_sqrt_thresholds_decide_distance_comparisons_exactly():
    rng = np.random.RandomState(5)
    r = torch.from_numpy(np.r_[0.0, 1.0, 2.0, 1e-300, 1e150, np.sqrt(rng.rand(200) * 1e4), rng.rand(200) * 50])
    t = chunked.sqrt_thresholds(r)
    below, above, d2 = t, t, [t]
    for _ in range(3):          # the squared distances right at, below and above each threshold
        below, above = torch.nextafter(below, torch.zeros_like(t)), torch.nextafter(above, torch.full_like(t, np.inf))
        d2 += [below, above]
    for candidate in d2 + [r * r, torch.from_numpy(rng.rand(len(r)) * 2500)]:
        assert torch.equal(torch.sqrt(candidate) < r, candidate < t)
