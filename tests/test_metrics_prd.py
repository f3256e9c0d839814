"""PRD (metrics/prd.py) against the closed forms of Sajjadi et al. 2018 and the reference's conventions."""
import numpy as np
import pytest

from metrics import keys
from metrics.prd import (compute_prd, compute_prd_from_embedding, compute_prd_metrics, f_beta, max_f_beta_pair,
                         plot_prd, prd_auc)

SLOPES = np.tan(np.linspace(1e-10, np.pi / 2 - 1e-10, 1001))   # the reference's angle grid


def test_fixed_histograms_match_closed_form():
    ref, ev = np.array([0.5, 0.5, 0.0]), np.array([0.0, 0.5, 0.5])
    precision, recall = compute_prd(ev, ref)
    # alpha(l) = sum min(l p, q) = min(l/2, 1/2); beta(l) = alpha(l)/l = min(1/2, 1/(2l))
    np.testing.assert_allclose(precision, np.minimum(SLOPES / 2, 0.5), rtol=1e-15, atol=0)
    np.testing.assert_allclose(recall, np.minimum(0.5, 0.5 / SLOPES), rtol=1e-15, atol=0)


def test_skewed_histograms_match_closed_form():
    ref, ev = np.array([0.2, 0.3, 0.5]), np.array([0.6, 0.4, 0.0])
    precision, recall = compute_prd(ev, ref, num_angles=7)
    lam = np.tan(np.linspace(1e-10, np.pi / 2 - 1e-10, 7))
    alpha = np.minimum(0.2 * lam, 0.6) + np.minimum(0.3 * lam, 0.4) + np.minimum(0.5 * lam, 0.0)
    np.testing.assert_allclose(precision, np.clip(alpha, 0, 1), rtol=1e-14)
    np.testing.assert_allclose(recall, np.clip(alpha / lam, 0, 1), rtol=1e-14)
    # limits: precision -> mass of eval on ref's support (1.0), recall -> mass of ref on eval's support (0.5)
    assert precision[-1] == pytest.approx(1.0) and recall[0] == pytest.approx(0.5)


def test_identical_histograms_give_f_scores_and_auc_one():
    p = np.array([0.1, 0.2, 0.3, 0.4])
    precision, recall = compute_prd(p, p)
    np.testing.assert_allclose(precision, np.minimum(SLOPES, 1), rtol=1e-12)
    f8, f1_8 = max_f_beta_pair(precision, recall)
    assert f8 == pytest.approx(1.0, abs=1e-9) and f1_8 == pytest.approx(1.0, abs=1e-9)
    assert prd_auc(precision, recall) == pytest.approx(1.0, abs=1e-6)


def test_disjoint_histograms_give_zero():
    precision, recall = compute_prd([1.0, 0.0], [0.0, 1.0])
    # exact: every min(lambda p, q) is min(x, 0) or min(0, x), so all sums, F scores and areas are 0.0
    assert precision.max() == recall.max() == 0.0
    assert max_f_beta_pair(precision, recall) == (0.0, 0.0) and prd_auc(precision, recall) == 0.0


def test_f_beta_matches_reference_formula_with_epsilon():
    assert f_beta(np.array([1.0]), np.array([1.0]), 8)[0] == 65 / (65 + 1e-10)   # exact: the same IEEE operations
    assert f_beta(np.array([0.5]), np.array([0.25]), 2)[0] == pytest.approx(5 * 0.125 / (2 + 0.25 + 1e-10))
    with pytest.raises(ValueError):
        f_beta(np.array([1.2]), np.array([0.5]), 8)
    with pytest.raises(ValueError):
        f_beta(np.array([0.2]), np.array([0.5]), 0)


@pytest.mark.parametrize("kwargs", [dict(epsilon=0.0), dict(epsilon=0.2), dict(num_angles=2)])
def test_reference_argument_checks(kwargs):
    with pytest.raises(ValueError):
        compute_prd([0.5, 0.5], [0.5, 0.5], **kwargs)


def _blobs(counts, seed, spread=0.01):
    """Points around 20 far-apart centres (k-means recovers them exactly), counts[i] at centre i."""
    centres = np.random.RandomState(123).randn(20, 5) * 50
    rng = np.random.RandomState(seed)
    return np.concatenate([centres[i] + spread * rng.randn(c, 5) for i, c in enumerate(counts)])


def test_embedding_histograms_recover_known_clusters():
    real = _blobs([10] * 20, 0)
    fake = _blobs([20] * 10 + [0] * 10, 1)                  # drops half of the modes
    precision, recall = compute_prd_from_embedding(fake, real, num_runs=2, seed=0)
    exp_p, exp_r = compute_prd(np.r_[np.full(10, 0.1), np.zeros(10)], np.full(20, 0.05))
    np.testing.assert_allclose(precision, exp_p, atol=1e-12)
    np.testing.assert_allclose(recall, exp_r, atol=1e-12)
    f8, f1_8 = max_f_beta_pair(precision, recall)
    assert f1_8 > 0.95 and f8 < 0.55                         # high precision, low recall (mode dropping)


def test_embedding_limits_identical_and_disjoint():
    real = _blobs([10] * 20, 0)
    same = compute_prd_metrics(real.copy(), real, num_runs=2, seed=0)
    assert same[keys.PRD_F8] > 0.99 and same[keys.PRD_F1_8] > 0.99 and same[keys.PRD_AUC] > 0.99
    far = compute_prd_metrics(real + 1e4, real, num_runs=2, seed=0)
    assert far[keys.PRD_F8] < 0.01 and far[keys.PRD_F1_8] < 0.01 and far[keys.PRD_AUC] < 0.01


def test_seeded_runs_are_reproducible_and_unequal_sizes_are_balanced():
    rng = np.random.RandomState(4)
    real, fake = rng.randn(300, 6), rng.randn(200, 6) + 0.5
    a = compute_prd_from_embedding(fake, real, num_runs=3, seed=5)
    b = compute_prd_from_embedding(fake, real, num_runs=3, seed=5)
    # exact: the curves are functions of integer cluster counts (a tolerance would not absorb a changed label)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])
    with pytest.raises(ValueError, match="num_clusters"):
        compute_prd_from_embedding(fake[:10], real)


def test_plot_writes_png(tmp_path):
    precision, recall = compute_prd([0.3, 0.7], [0.5, 0.5])
    path = plot_prd({"model": (precision, recall)}, tmp_path / "prd.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def _reference_prd_f_scores(fake, real, seed):
    """prd_score.py's compute_prd_from_embedding (MiniBatchKMeans(20, n_init=10), 10 runs), global RNG seeded."""
    from sklearn.cluster import MiniBatchKMeans

    np.random.seed(seed)
    curves = []
    for _ in range(10):
        labels = MiniBatchKMeans(n_clusters=20, n_init=10).fit(np.vstack([fake, real])).labels_
        bins = [np.histogram(p, bins=20, range=[0, 20], density=True)[0] for p in (labels[:len(fake)],
                                                                                labels[len(fake):])]
        curves.append(compute_prd(bins[0], bins[1]))
    return max_f_beta_pair(np.mean([c[0] for c in curves], 0), np.mean([c[1] for c in curves], 0))


@pytest.mark.slow
def test_within_the_reference_run_to_run_spread():
    # overlapping modes, the fake set missing a third of them: clustering matters (KMEANS_INITS < 10)
    rng = np.random.RandomState(0)
    centres = rng.randn(30, 16) * 1.2
    real = centres[rng.randint(0, 30, 1500)] + rng.randn(1500, 16)
    fake = centres[rng.randint(0, 20, 1500)] + 0.8 * rng.randn(1500, 16)
    ours = np.array([max_f_beta_pair(*compute_prd_from_embedding(fake, real, seed=s)) for s in range(6)])
    ref = np.array([_reference_prd_f_scores(fake, real, s) for s in range(6)])
    spread = np.maximum(ref.std(axis=0), ours.std(axis=0)) + 0.003
    assert (np.abs(ours.mean(axis=0) - ref.mean(axis=0)) <= 2 * spread).all(), (ours.mean(0), ref.mean(0), spread)
