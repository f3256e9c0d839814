"""Corrupt cache entries are misses (warn once naming the file, recompute, overwrite), and the domain
extractor's identity includes the torch thread count it trained with (metrics/cache.py, features/domain.py)."""
import warnings

import numpy as np
import pytest
import torch

import metrics.features.domain as domain_module
from metrics.features import DomainExtractor, Recipe, extract

LEVELS = 17
TINY = Recipe(width=4, feature_dim=8, epochs=1, min_steps=5, max_steps=5, batch_size=16)


class CountingExtractor:
    name, id = "count", "count-1"

    def __init__(self):
        self.calls = 0

    def identity(self):
        return {"extractor": "count"}

    def embed(self, x_unit):
        self.calls += 1
        f = x_unit.flatten(1)[:, :4]
        return f, f[:, :2]


def _damage(path, how):
    data = path.read_bytes()
    path.write_bytes(b"" if how == "empty" else data[:len(data) // 2] if how == "truncated" else b"garbage")


def _no_warning(fn):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return fn()


@pytest.mark.parametrize("how", ["empty", "truncated", "garbage"])
def test_corrupt_feature_cache_entry_is_recomputed_and_overwritten(tmp_path, how):
    x = torch.randint(0, LEVELS, (10, 1, 4, 4), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    ext = CountingExtractor()
    first = extract(ext, lambda: x, LEVELS, source={"data": "a"}, cache_dir=tmp_path)
    (path,) = tmp_path.glob("features-*.npz")
    _damage(path, how)
    with pytest.warns(RuntimeWarning, match=f"cache file {path} is corrupt or unreadable") as record:
        again = extract(ext, lambda: x, LEVELS, source={"data": "a"}, cache_dir=tmp_path)
    assert len(record) == 1 and ext.calls == 2
    np.testing.assert_array_equal(again.features, first.features)
    third = _no_warning(lambda: extract(ext, lambda: pytest.fail("recomputed"), LEVELS, source={"data": "a"},
                                        cache_dir=tmp_path))
    np.testing.assert_array_equal(third.features, first.features)       # exact: read back from the file
    assert not list(tmp_path.glob("*.tmp"))


@pytest.fixture(scope="module")
def data():
    rng = np.random.RandomState(0)
    y = np.arange(60) % 3
    x = rng.randint(0, 4, (60, 1, 8, 8))
    for i, c in enumerate(y):
        x[i, :, 2 * c:2 * c + 2] = 14
    return torch.from_numpy(x.astype(np.uint8)), torch.from_numpy(y)


@pytest.mark.parametrize("suffix,how", [(".pt", "empty"), (".pt", "truncated"), (".json", "empty"),
                                        (".json", "garbage")])
def test_corrupt_domain_extractor_cache_is_retrained_and_overwritten(data, tmp_path, monkeypatch, suffix, how):
    kw = dict(seed=0, cache_dir=tmp_path, recipe=TINY)
    first = DomainExtractor.fit_or_load(*data, LEVELS, **kw)
    (path,) = tmp_path.glob(f"domain-*{suffix}")
    _damage(path, how)
    with pytest.warns(RuntimeWarning, match=f"cache file {path} is corrupt") as record:
        again = DomainExtractor.fit_or_load(*data, LEVELS, **kw)
    assert len(record) == 1 and again.id == first.id
    monkeypatch.setattr(domain_module, "train_classifier", lambda *a, **k: pytest.fail("trained again"))
    loaded = _no_warning(lambda: DomainExtractor.fit_or_load(*data, LEVELS, **kw))
    np.testing.assert_allclose(loaded.features(data[0]), again.features(data[0]), rtol=1e-6, atol=1e-6)


def test_thread_count_is_part_of_the_domain_extractor_identity(data, tmp_path):
    before = torch.get_num_threads()
    ids = {}
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            ext = DomainExtractor.fit_or_load(*data, LEVELS, seed=0, cache_dir=tmp_path, recipe=TINY)
            assert ext.key["train_threads"] == threads and ext.key["train_device"] == "cpu"
            ids[threads] = ext.id
    finally:
        torch.set_num_threads(before)
    assert ids[1] != ids[2] and len(list(tmp_path.glob("domain-*.pt"))) == 2
