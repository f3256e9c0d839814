"""GAN-train / GAN-test (metrics/gan_train_test.py) with a fake model that replays real test images."""
import pytest
import torch

from metrics import keys
from metrics.gan_train_test import balanced_labels, gan_train_test
from tests_support import LEVELS, TINY, Replay, bars


def test_replayed_test_images_score_like_the_baseline():
    train_x, train_y = bars(150, 0)
    test_x, test_y = bars(60, 1)
    model = Replay(test_x, test_y)
    res = gan_train_test(model, train_x, train_y, test_x, test_y, LEVELS, seeds=(0, 1), recipe=TINY,
                         sample_batch_size=64)
    assert set(res.mean) == set(res.std) == {keys.GAN_TRAIN, keys.GAN_TEST, keys.REAL_BASELINE}
    assert res.n_generated == 150 and len(res.per_seed) == 2
    for row in res.per_seed:
        assert row[keys.GAN_TEST] == pytest.approx(row[keys.REAL_BASELINE], abs=5)
    assert res.mean[keys.GAN_TRAIN] > 80                   # trained on real images, tested on real
    labels = torch.cat(model.seen[:3])
    assert torch.bincount(labels).tolist() == [50, 50, 50]  # class-balanced, |train| samples
    assert res.std[keys.REAL_BASELINE] >= 0


class Garbage:
    def sample(self, n, labels=None):
        return torch.zeros(n, 1, 8, 8)


def test_uninformative_samples_score_near_chance():
    train_x, train_y = bars(150, 0)
    test_x, test_y = bars(60, 1)
    res = gan_train_test(Garbage(), train_x, train_y, test_x, test_y, LEVELS, seeds=(0,), recipe=TINY)
    assert res.mean[keys.GAN_TRAIN] < 50 and res.mean[keys.REAL_BASELINE] > 90


def test_balanced_labels():
    lab = balanced_labels(11, 3, seed=0)
    assert sorted(torch.bincount(lab).tolist()) == [3, 4, 4]
    assert torch.equal(lab, balanced_labels(11, 3, seed=0)) and not torch.equal(lab, balanced_labels(11, 3, seed=1))
