"""GAN-train / GAN-test (metrics/gan_train_test.py) with a fake model that replays real test images."""
import numpy as np
import pytest
import torch

from metrics import keys
from metrics.features import Recipe
from metrics.gan_train_test import balanced_labels, gan_train_test

LEVELS = 17
TINY = Recipe(width=8, feature_dim=16, epochs=4, min_steps=40, max_steps=60, batch_size=32)


def bars(n, seed, n_classes=3, size=8):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % n_classes
    x = rng.randint(0, 4, (n, 1, size, size))
    for i, c in enumerate(y):
        x[i, :, 2 * c:2 * c + 2] = rng.randint(12, LEVELS, (1, 2, size))
    return torch.from_numpy(x.astype(np.uint8)), torch.from_numpy(y)


class Replay:
    """A 'conditional model' whose samples are real images of the requested class (u-space, bin centres)."""

    def __init__(self, x, y):
        self.by_class = {int(c): x[y == c] for c in torch.unique(y)}
        self.seen = []

    def sample(self, n, labels=None):
        self.seen.append(labels.clone())
        out, used = [], {c: 0 for c in self.by_class}
        for c in labels.tolist():
            pool = self.by_class[c]
            out.append(pool[used[c] % len(pool)])
            used[c] += 1
        return (torch.stack(out).float() + 0.5) / LEVELS


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
