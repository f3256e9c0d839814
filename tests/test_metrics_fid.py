"""FID (metrics/fid.py): closed forms, agreement with clean-fid, numerics (metrics-reference.md §2.2, §8.2)."""
import inspect
import warnings

import numpy as np
import pytest

from metrics.fid import compute_fid, feature_statistics, frechet_distance, trace_sqrt_product


def _rotation(d, seed):
    q, _ = np.linalg.qr(np.random.RandomState(seed).randn(d, d))
    return q


def _cleanfid_frechet():
    """clean-fid's frechet_distance, or skip when it cannot run on the installed SciPy."""
    from cleanfid import fid as cleanfid_fid

    s = np.eye(2)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cleanfid_fid.frechet_distance(np.zeros(2), s, np.ones(2), s)
    except TypeError as e:  # SciPy >= 1.18 removed sqrtm(disp=...)
        pytest.skip(f"clean-fid's frechet_distance fails on this SciPy ({e}); ours does not need `disp`")
    return cleanfid_fid.frechet_distance


def test_commuting_gaussians_closed_form():
    # same eigenvectors: FID = |m1 - m2|^2 + sum (sqrt(a) - sqrt(b))^2
    d, q = 6, _rotation(6, 0)
    a, b = np.array([1., 2, 3, 4, 5, 6]), np.array([6., 1, 0.5, 2, 9, 0.1])
    m1, m2 = np.arange(d, dtype=float), np.ones(d)
    expected = np.sum((m1 - m2) ** 2) + np.sum((np.sqrt(a) - np.sqrt(b)) ** 2)
    got = frechet_distance(m1, q @ np.diag(a) @ q.T, m2, q @ np.diag(b) @ q.T)
    assert got == pytest.approx(expected, rel=1e-12)


def test_two_d_non_commuting_by_hand():
    # C1 = I, C2 = [[2,1],[1,2]] (eigen 1, 3): Tr(sqrt(C2)) = 1 + sqrt(3); FID = 2 + 4 - 2(1 + sqrt 3) + |dm|^2
    c2 = np.array([[2.0, 1.0], [1.0, 2.0]])
    got = frechet_distance([0, 0], np.eye(2), [1, 2], c2)
    assert got == pytest.approx(5 + 6 - 2 * (1 + np.sqrt(3)), rel=1e-12)
    # C1 = diag(4, 1), C2 = [[1, .5], [.5, 1]]: eigenvalues of C1 C2 solve t^2 - 5t + 3 = 0
    t = np.roots([1, -5, 3])
    c1 = np.diag([4.0, 1.0])
    expected = 5 + 2 - 2 * np.sqrt(t).sum()
    assert frechet_distance([0, 0], c1, [0, 0], np.array([[1, .5], [.5, 1]])) == pytest.approx(expected, rel=1e-12)


def test_equal_covariances_give_squared_mean_distance():
    f = np.random.RandomState(1).randn(500, 8)
    mu, sigma = feature_statistics(f)
    assert frechet_distance(mu, sigma, mu + 0.5, sigma) == pytest.approx(8 * 0.25, rel=1e-9)


def test_identical_feature_sets_give_zero():
    f = np.random.RandomState(2).randn(400, 16)
    assert abs(compute_fid(f, f)) < 1e-9


def test_statistics_are_float64_with_ddof_one():
    f = np.random.RandomState(3).randn(50, 4).astype(np.float32)
    mu, sigma = feature_statistics(f)
    assert mu.dtype == sigma.dtype == np.float64
    ref = np.cov(f.astype(np.float64), rowvar=False)
    np.testing.assert_allclose(sigma, ref, rtol=1e-12, atol=1e-14 * np.abs(ref).max())   # BLAS summation order


def test_statistics_are_chunk_independent(monkeypatch):
    import metrics.fid as fid_module

    f = np.random.RandomState(4).randn(103, 5)
    mu, sigma = feature_statistics(f)
    monkeypatch.setattr(fid_module, "STATS_ROWS", 10)
    mu2, sigma2 = feature_statistics(f)
    np.testing.assert_allclose(mu2, mu, rtol=1e-14, atol=1e-15)
    np.testing.assert_allclose(sigma2, sigma, rtol=1e-12, atol=1e-14 * np.abs(sigma).max())


def _inception_like(n, d, seed, shift=0.0):
    """Non-negative, correlated float32 features with a mean well away from 0, like Inception's pool3."""
    rng = np.random.RandomState(seed)
    mix = np.random.RandomState(99).randn(d, d).astype(np.float32) / np.sqrt(d)
    return np.maximum(rng.randn(n, d).astype(np.float32) @ mix + 0.3 + shift, 0).astype(np.float32)


def test_wide_float32_features_get_float32_products_within_rounding(monkeypatch):
    import metrics.fid as fid_module

    f = _inception_like(1500, 512, 0)
    assert f.shape[1] >= fid_module.FLOAT32_MIN_DIM
    mu, sigma = feature_statistics(f)
    ref = np.cov(f.astype(np.float64), rowvar=False)
    assert mu.dtype == sigma.dtype == np.float64
    np.testing.assert_allclose(mu, f.astype(np.float64).mean(axis=0), rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(sigma, ref, rtol=0, atol=1e-5 * np.abs(ref).max())      # float32 products
    monkeypatch.setattr(fid_module, "STATS_ROWS", 256)                                  # chunking is invisible
    np.testing.assert_allclose(feature_statistics(f)[1], sigma, rtol=0, atol=1e-5 * np.abs(ref).max())


@pytest.mark.parametrize("shift", [0.0, 0.05])
def test_wide_float32_fid_agrees_with_cleanfid_end_to_end(shift):
    # the speed issue's contract: FID from float32 features equal to clean-fid's (np.cov + sqrtm) to 1e-6
    a, b = _inception_like(2000, 512, 1), _inception_like(2100, 512, 2, shift)
    fid = compute_fid(a, b)
    assert fid == pytest.approx(compute_fid(a.astype(np.float64), b.astype(np.float64)), rel=3e-7)  # float64 products
    cleanfid_frechet = _cleanfid_frechet()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = cleanfid_frechet(np.mean(a, axis=0), np.cov(a, rowvar=False), np.mean(b, axis=0), np.cov(b, rowvar=False))
    assert fid == pytest.approx(ref, rel=1e-6)


@pytest.mark.parametrize("n,d", [(600, 64), (3000, 256), (80, 32)])
def test_agrees_with_cleanfid_frechet_distance(n, d):
    cleanfid_frechet = _cleanfid_frechet()
    rng = np.random.RandomState(n + d)
    a = rng.randn(n, d) @ rng.randn(d, d) * 0.3
    b = rng.randn(n + 7, d) @ rng.randn(d, d) * 0.3 + 0.1
    stats = (*feature_statistics(a), *feature_statistics(b))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = cleanfid_frechet(*stats)
    assert frechet_distance(*stats) == pytest.approx(ref, rel=1e-6)


def test_singular_covariances_stay_finite_and_agree():
    # N < D: rank-deficient covariances (the pytorch-fid#13 "imaginary component" regime)
    cleanfid_frechet = _cleanfid_frechet()
    rng = np.random.RandomState(5)
    a, b = rng.randn(40, 64), rng.randn(40, 64) + 0.2
    with pytest.warns(UserWarning, match="rank-deficient"):
        stats = (*feature_statistics(a), *feature_statistics(b))
    ours = frechet_distance(*stats)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = cleanfid_frechet(*stats)
    assert np.isfinite(ours) and ours == pytest.approx(ref, rel=1e-6)


def test_torch_fidelity_4x4_regression_is_finite():
    # the 4x4 case that returned NaN when eigvals were taken in real dtype (torch-fidelity PR #50)
    f1 = np.array([[1., 0, 0, 0], [0, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1], [1, 1, 1, 1]])
    f2 = f1[::-1] * 2
    assert np.isfinite(compute_fid(f1, f2))


def test_trace_sqrt_matches_eigvals_of_product():
    rng = np.random.RandomState(7)
    a, b = rng.randn(30, 10), rng.randn(30, 10)
    c1, c2 = a.T @ a, b.T @ b
    ref = np.sqrt(np.linalg.eigvals(c1 @ c2).astype(np.complex128)).real.sum()
    assert trace_sqrt_product(c1, c2) == pytest.approx(ref, rel=1e-10)


def test_cholesky_and_symmetric_square_root_paths_agree(monkeypatch):
    import metrics.fid as fid_module

    rng = np.random.RandomState(8)
    a, b = rng.randn(50, 12), rng.randn(40, 12)
    c1, c2 = a.T @ a, b.T @ b
    fast = trace_sqrt_product(c1, c2)

    monkeypatch.setattr(fid_module, "_cholesky", lambda c: None)       # pretend c1 is singular
    assert trace_sqrt_product(c1, c2) == pytest.approx(fast, rel=1e-10)
    low_rank = a[:5].T @ a[:5]                                      # singular: rank 5 of 12
    ref = np.sqrt(np.linalg.eigvals(low_rank @ c2).astype(np.complex128)).real.sum()
    assert trace_sqrt_product(low_rank, c2) == pytest.approx(ref, rel=1e-6)


def test_does_not_use_scipy_sqrtm():
    import metrics.fid as fid_module

    assert "sqrtm" not in inspect.getsource(fid_module).split('"""', 2)[2]


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="N x D"):
        compute_fid(np.zeros(5), np.zeros((5, 2)))
    with pytest.raises(ValueError, match="do not match"):
        frechet_distance(np.zeros(2), np.eye(2), np.zeros(3), np.eye(3))


@pytest.mark.parametrize("n, m", [(24, 24), (40, 3000), (300, 12)])
def test_sets_smaller_than_the_dimension_use_their_gram_matrix(n, m):
    """The low-rank path (no D x D matrix) equals the covariance path to the tolerance the suite keeps against
    clean-fid (the covariance path of a singular matrix carries ~1e-8 round-off from clipped eigenvalues)."""
    from metrics.fid import compute_fid, feature_statistics, frechet_distance
    rng = np.random.RandomState(n + m)
    fake, real = rng.randn(n, 256) * 1.3 + 0.2, rng.randn(m, 256)
    with pytest.warns(UserWarning, match="rank-deficient"):
        full = frechet_distance(*feature_statistics(fake), *feature_statistics(real))
    with pytest.warns(UserWarning, match=f"FID from {min(n, m)} samples of 256-d features: the covariance is "
                                         "rank-deficient"):   # whichever set is the small one
        low = compute_fid(fake, real)
    assert low == pytest.approx(full, rel=1e-6)


@pytest.mark.parametrize("n, d, itemsize", [(50000, 2048, 4), (50000, 2048, 8), (10000, 64, 8), (7, 3, 8)])
def test_chunks_fit_the_buffer_and_split_a_set_evenly(n, d, itemsize):
    from metrics.fid import STATS_BYTES, _chunk_rows

    rows = _chunk_rows(n, d, itemsize)
    chunks = -(-n // rows)
    assert rows * d * itemsize <= STATS_BYTES and 1 <= rows <= n
    assert n - (chunks - 1) * rows >= rows - chunks          # the last chunk is not a small remainder
