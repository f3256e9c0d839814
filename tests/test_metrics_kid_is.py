"""KID (metrics/kid.py) against clean-fid, and the Inception score (metrics/inception_score.py)."""
import numpy as np
import pytest

from metrics.inception_score import compute_inception_score, probabilities_from_logits
from metrics.kid import compute_kid


@pytest.mark.parametrize("n_fake,n_real,subset", [(120, 150, 50), (80, 80, 1000)])
def test_kid_equals_cleanfid_kernel_distance(n_fake, n_real, subset):
    from cleanfid.fid import kernel_distance

    rng = np.random.RandomState(0)
    fake, real = rng.randn(n_fake, 12) + 0.3, rng.randn(n_real, 12)
    np.random.seed(11)
    ref = kernel_distance(fake, real, num_subsets=20, max_subset_size=subset)
    assert compute_kid(fake, real, num_subsets=20, max_subset_size=subset, seed=11) == pytest.approx(ref, rel=1e-12)


def test_kid_separates_and_is_deterministic():
    rng = np.random.RandomState(1)
    real, same, shifted = rng.randn(300, 8), rng.randn(300, 8), rng.randn(300, 8) + 1.0
    near = compute_kid(same, real, num_subsets=10, max_subset_size=100, seed=0)
    far = compute_kid(shifted, real, num_subsets=10, max_subset_size=100, seed=0)
    assert abs(near) < 0.05 < far
    assert near == pytest.approx(compute_kid(same, real, num_subsets=10, max_subset_size=100, seed=0), rel=1e-12)


def test_kid_rejects_mismatched_features():
    with pytest.raises(ValueError, match="equal D"):
        compute_kid(np.zeros((10, 3)), np.zeros((10, 4)))


def test_is_of_identical_one_hot_predictions_is_one():
    probs = np.zeros((100, 10))
    probs[:, 3] = 1
    assert compute_inception_score(probs) == (1.0, 0.0)   # exact: p(y) = the one-hot row, every KL term is 0


def test_is_of_balanced_confident_predictions_is_number_of_classes():
    probs = np.eye(10)[np.arange(200) % 10]          # every split holds each class equally
    mean, std = compute_inception_score(probs, splits=10)
    assert mean == pytest.approx(10.0, rel=1e-12) and std == pytest.approx(0.0, abs=1e-12)


def test_is_uniform_predictions_is_one_and_logits_path():
    assert compute_inception_score(np.full((50, 7), 1 / 7))[0] == pytest.approx(1.0, rel=1e-12)
    logits = np.where(np.eye(4)[np.arange(40) % 4] > 0, 60.0, 0.0)   # confident, float64 softmax
    assert compute_inception_score(probabilities_from_logits(logits))[0] == pytest.approx(4.0, rel=1e-9)


def test_is_splits_follow_reference_chunking():
    # two splits: first half all class 0, second half balanced over 2 classes -> scores 1 and 2
    probs = np.eye(2)[np.r_[np.zeros(10, int), np.arange(10) % 2]]
    mean, std = compute_inception_score(probs, splits=2)
    assert (mean, std) == pytest.approx((1.5, 0.5))
    # shuffling mixes the chunks: same data, different split scores, reproducible by seed
    assert compute_inception_score(probs, splits=2, shuffle_seed=0) == pytest.approx(compute_inception_score(
        probs, splits=2, shuffle_seed=0), rel=1e-12)


def test_is_needs_enough_samples():
    with pytest.raises(ValueError, match="splits"):
        compute_inception_score(np.full((5, 3), 1 / 3), splits=10)


@pytest.mark.parametrize("tile", [7, 2048])
def test_kid_from_prdc_gram_tiles_equals_compute_kid(monkeypatch, tile):
    import metrics.prdc as prdc_module
    from metrics.kid import KidFromGrams

    monkeypatch.setattr(prdc_module, "TILE", tile)       # 7: many tiles, off-diagonal and ragged ones
    rng = np.random.RandomState(3)
    fake, real = rng.randn(45, 6) + 0.3, rng.randn(52, 6)
    kid = KidFromGrams(len(fake), len(real), 6, num_subsets=15, max_subset_size=30, seed=9)
    prdc_module.compute_prdc(real, fake, nearest_k=3, gram_hook=kid)
    # the same subsets and kernel values, summed in another order
    assert kid.value() == pytest.approx(compute_kid(fake, real, num_subsets=15, max_subset_size=30, seed=9), rel=1e-10)
