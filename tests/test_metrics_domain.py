"""``domain`` extractor and the feature cache (metrics/features/, metrics/cache.py)."""
import numpy as np
import pytest
import torch

import metrics.features.domain as domain_module
from metrics.cache import cached_arrays, hash_key
from metrics.features import DomainExtractor, Recipe, embed_images, extract
from metrics.features.classifier import SmallCNN
from tests_support import LEVELS, TINY, bars


@pytest.fixture(scope="module")
def data():
    return (*bars(150, 0), *bars(60, 1))


def test_trains_and_reports_heldout_accuracy(data, tmp_path):
    ext = DomainExtractor.fit_or_load(*data[:2], LEVELS, seed=0, cache_dir=tmp_path, test_x=data[2],
                                      test_y=data[3], recipe=TINY)
    assert ext.accuracy > 90
    feats = ext.features(data[2])
    assert feats.shape == (60, 16) and (feats < 0).any()                       # pre-ReLU features
    assert np.sqrt((ext.features(data[0]).astype(np.float64) ** 2).mean()) == pytest.approx(1.0, rel=1e-4)
    assert ext.logits(data[2]).shape == (60, 3)
    saved = list(tmp_path.glob("domain-*.json"))
    assert len(saved) == 1 and '"accuracy"' in saved[0].read_text()


def test_cache_is_reused_and_invalidated(data, tmp_path, monkeypatch):
    kw = dict(seed=0, cache_dir=tmp_path, test_x=data[2], test_y=data[3], recipe=TINY)
    first = DomainExtractor.fit_or_load(*data[:2], LEVELS, **kw)

    def no_training(*a, **k):
        raise AssertionError("trained again although the cache holds this extractor")
    monkeypatch.setattr(domain_module, "train_classifier", no_training)
    again = DomainExtractor.fit_or_load(*data[:2], LEVELS, **kw)
    np.testing.assert_allclose(first.features(data[2]), again.features(data[2]), rtol=1e-6, atol=1e-6)
    assert again.accuracy == first.accuracy and again.id == first.id    # exact: the stored value, not recomputed
    monkeypatch.undo()
    x2 = data[0].clone()
    x2[0, 0, 0, 0] ^= 1
    changed = [dict(kw, seed=1), dict(kw, recipe=Recipe(**{**TINY.__dict__, "lr": 1e-3})), dict(kw, test_x=None,
               test_y=None)]
    ids = {first.id} | {DomainExtractor.fit_or_load(*data[:2], LEVELS, **c).id for c in changed}
    ids.add(DomainExtractor.fit_or_load(x2, data[1], LEVELS, **kw).id)
    ids.add(DomainExtractor.fit_or_load(*data[:2], LEVELS + 1, **kw).id)
    assert len(ids) == 6 and len(list(tmp_path.glob("domain-*.pt"))) == 6
    assert not list(tmp_path.glob("*.tmp"))


def test_deterministic_with_seed_and_batch_size_independent(data):
    a = DomainExtractor.fit_or_load(*data[:2], LEVELS, seed=3, cache_dir=None, recipe=TINY)
    b = DomainExtractor.fit_or_load(*data[:2], LEVELS, seed=3, cache_dir=None, recipe=TINY)
    np.testing.assert_allclose(a.features(data[2]), b.features(data[2]), rtol=1e-5, atol=1e-5)
    one = embed_images(a, data[2], LEVELS, batch_size=1)
    many = embed_images(a, data[2], LEVELS, batch_size=64)
    np.testing.assert_allclose(one.features, many.features, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one.logits, many.logits, rtol=1e-5, atol=1e-5)
    # floats in [0, 1] (x / (L - 1)) give the same features as uint8 levels
    np.testing.assert_allclose(a.features(data[2].float() / (LEVELS - 1)), a.features(data[2]), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("channels,size", [(1, 28), (3, 32), (1, 64), (3, 8)])
def test_network_handles_resolutions_and_channels(channels, size):
    net = SmallCNN(channels, size, 10, width=8, feature_dim=16).eval()
    with torch.no_grad():
        assert net(torch.rand(2, channels, size, size)).shape == (2, 10)
        assert net.embed(torch.rand(2, channels, size, size)).shape == (2, 16)


def test_fits_28px_three_channels_quickly():
    x, y = bars(40, 2, size=28, channels=3)
    ext = DomainExtractor.fit_or_load(x, y, LEVELS, seed=0, cache_dir=None,
                                      recipe=Recipe(width=4, feature_dim=8, epochs=1, min_steps=3, max_steps=3))
    assert ext.features(x[:3]).shape == (3, 8) and 0 <= ext.accuracy <= 100


def test_bad_inputs_are_one_line_errors(data):
    with pytest.raises(ValueError, match="levels=4"):
        DomainExtractor.fit_or_load(*data[:2], 4, seed=0, cache_dir=None, recipe=TINY)
    with pytest.raises(ValueError, match="both"):
        DomainExtractor.fit_or_load(*data[:2], LEVELS, seed=0, cache_dir=None, test_x=data[2], recipe=TINY)
    ext = DomainExtractor.fit_or_load(*data[:2], LEVELS, seed=0, cache_dir=None, recipe=TINY)
    with pytest.raises(ValueError, match="trained on images"):
        ext.features(torch.zeros(2, 1, 16, 16, dtype=torch.uint8))


class CountingExtractor:
    """A fake extractor that records how often it runs."""

    name, id = "count", "count-1"

    def __init__(self, version=1):
        self.version, self.calls = version, 0

    def identity(self):
        return {"extractor": "count", "version": self.version}

    def embed(self, x_unit):
        self.calls += 1
        f = x_unit.flatten(1)[:, :4] * self.version
        return f, f[:, :2]


def test_feature_cache_reuses_and_invalidates(tmp_path):
    x = torch.randint(0, LEVELS, (10, 1, 4, 4), dtype=torch.uint8)
    ext = CountingExtractor()
    src = {"data": "a"}
    first = extract(ext, lambda: x, LEVELS, source=src, cache_dir=tmp_path, batch_size=4)
    assert ext.calls == 3
    again = extract(ext, lambda: pytest.fail("images recomputed on a cache hit"), LEVELS, source=src,
                    cache_dir=tmp_path, batch_size=7)
    np.testing.assert_array_equal(first.features, again.features)      # exact: read back from the cache file
    for other_ext, other_src, levels in ((CountingExtractor(2), src, LEVELS), (ext, {"data": "b"}, LEVELS),
                                         (ext, src, LEVELS + 1)):
        before = other_ext.calls
        extract(other_ext, lambda: x, levels, source=other_src, cache_dir=tmp_path)
        assert other_ext.calls > before
    assert len(list(tmp_path.glob("features-*.npz"))) == 4 and not list(tmp_path.glob("*.tmp"))


def test_cached_arrays_is_atomic_on_failure(tmp_path):
    def boom():
        raise RuntimeError("interrupted")
    with pytest.raises(RuntimeError):
        cached_arrays(tmp_path, "x", {"k": 1}, boom)
    assert not list(tmp_path.iterdir())
    out = cached_arrays(tmp_path, "x", {"k": 1}, lambda: {"a": np.arange(3)})
    assert (tmp_path / f"x-{hash_key({'k': 1})}.npz").exists() and out["a"].tolist() == [0, 1, 2]
