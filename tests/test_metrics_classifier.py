"""The classifiers behind the domain extractor and GAN-train / GAN-test (metrics/features/classifier.py):
the small ResNet, recipe keys, and the progress bars (tiny synthetic data, a few seconds in all)."""
import dataclasses
import importlib
import inspect

import numpy as np
import pytest
import torch

from metrics import keys
from metrics.features import DomainExtractor, Recipe
from metrics.features import domain as domain_module
from metrics.features.classifier import (RESNET_RECIPE, SmallCNN, SmallResNet, accuracy, predict, progress_bar,
                                         train_classifier)
from tests_support import LEVELS, TINY, Replay, bars

gtt = importlib.import_module("metrics.gan_train_test")  # (``metrics`` re-exports a function of that name)

TINY_RESNET = dataclasses.replace(TINY, arch="resnet", warmup=0.1)


def stripes(n, seed, size=8, channels=1):
    """Class 0: horizontal stripes, 1: vertical, 2: checkerboard (period 2, random phase, faint noise): classes a
    global-average-pooled network can tell apart anywhere in the image, at any size."""
    rng = np.random.RandomState(seed)
    y = np.arange(n) % 3
    i, j = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    pats = [(i % 2), (j % 2), ((i + j) % 2)]
    x = np.empty((n, channels, size, size), np.int64)
    for k, c in enumerate(y):
        on = (pats[c] + rng.randint(2)) % 2
        bright, faint = rng.randint(12, LEVELS, (2, channels, size, size)), rng.randint(0, 4, (channels, size, size))
        x[k] = on * bright[0] + (1 - on) * faint
    return torch.from_numpy(x.astype(np.uint8)), torch.from_numpy(y)


def unit(x):
    return x.float() / (LEVELS - 1)


@pytest.mark.parametrize("channels,size", [(1, 8), (3, 8), (1, 32), (3, 32)])
def test_resnet_trains_and_predicts(channels, size):
    x, y = stripes(120, 0, size=size, channels=channels)
    tx, ty = stripes(60, 1, size=size, channels=channels)
    net = train_classifier(unit(x), y, 3, seed=0, recipe=TINY_RESNET, progress=False)
    assert isinstance(net, SmallResNet) and not net.training
    assert accuracy(net, unit(tx), ty, progress=False) > 90
    feats, logits = predict(net, unit(tx), batch_size=7, progress=False)
    assert feats.shape == (60, 16) and logits.shape == (60, 3) and (feats < 0).any()   # pre-ReLU features
    one = predict(net, unit(tx), batch_size=1, progress=False)
    np.testing.assert_allclose(one[0], feats, rtol=1e-5, atol=1e-5)                    # eval mode: per-image


def test_resnet_shape_and_blocks():
    net = SmallResNet(3, 32, 10, width=16, feature_dim=64, blocks=2)
    convs = [m for m in net.modules() if isinstance(m, torch.nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) == 1 + 3 * 2 * 2                                              # stem + 6 blocks of 2 convs
    assert [m.out_channels for m in convs][-1] == 64 and net.feature.in_features == 64
    with torch.no_grad():
        assert net.eval()(torch.rand(2, 3, 32, 32)).shape == (2, 10)
    with pytest.raises(ValueError, match="block"):
        SmallResNet(1, 8, 10, blocks=0)


def test_recipe_builds_its_arch_and_key_names_it():
    assert isinstance(Recipe().build(1, 8, 10), SmallCNN)
    assert isinstance(Recipe(arch="resnet").build(1, 8, 10), SmallResNet)
    keys_ = [Recipe().key(), Recipe(arch="resnet").key(), Recipe(arch="resnet", blocks=2).key(),
             Recipe(channels_last=False).key(), Recipe(warmup=0.1).key()]
    assert all(k["arch_version"] >= 2 for k in keys_)
    assert len({tuple(sorted(k.items())) for k in keys_}) == len(keys_)
    assert RESNET_RECIPE.arch == "resnet" and Recipe().arch == "cnn"
    with pytest.raises(ValueError, match="arch"):
        Recipe(arch="vgg")


def test_channels_last_only_changes_the_memory_layout():
    x, y = bars(20, 0, size=32)
    torch.manual_seed(0)
    a = Recipe(arch="resnet", width=8, channels_last=True).build(1, 32, 3).eval()
    b = Recipe(arch="resnet", width=8, channels_last=False).build(1, 32, 3).eval()
    b.load_state_dict(a.state_dict())
    np.testing.assert_allclose(predict(a, unit(x), progress=False)[1], predict(b, unit(x), progress=False)[1],
                               rtol=1e-4, atol=1e-4)


def test_domain_extractor_with_resnet_caches_by_arch(tmp_path, monkeypatch):
    x, y = bars(120, 0)
    tx, ty = bars(60, 1)
    kw = dict(seed=0, cache_dir=tmp_path, test_x=tx, test_y=ty, progress=False)
    res = DomainExtractor.fit_or_load(x, y, LEVELS, recipe=TINY_RESNET, **kw)
    cnn = DomainExtractor.fit_or_load(x, y, LEVELS, recipe=TINY, **kw)
    assert res.id != cnn.id and res.key["arch"] == "resnet" and cnn.key["arch"] == "cnn"
    assert res.accuracy > 90 and isinstance(res.net, SmallResNet)

    def no_training(*a, **k):
        raise AssertionError("trained again although the cache holds this extractor")
    monkeypatch.setattr(domain_module, "train_classifier", no_training)
    again = DomainExtractor.fit_or_load(x, y, LEVELS, recipe=TINY_RESNET, **kw)
    assert isinstance(again.net, SmallResNet) and again.accuracy == res.accuracy
    np.testing.assert_allclose(again.features(tx), res.features(tx), rtol=1e-6, atol=1e-6)


# ---- progress ------------------------------------------------------------------------------------------
def test_progress_flag_silences_training(capsys):
    x, y = bars(60, 0)
    train_classifier(unit(x), y, 3, seed=0, recipe=TINY, progress=False)
    DomainExtractor.fit_or_load(x, y, LEVELS, seed=0, cache_dir=None, recipe=TINY, progress=False)
    assert capsys.readouterr().err == ""
    train_classifier(unit(x), y, 3, seed=0, recipe=TINY)                             # default: a bar
    err = capsys.readouterr().err
    assert "training cnn classifier on 60 images" in err and "40/40" in err        # not a tty: the last line stays
    DomainExtractor.fit_or_load(x, y, LEVELS, seed=0, cache_dir=None, recipe=TINY_RESNET)
    err = capsys.readouterr().err
    assert "domain extractor: training resnet (seed 0) on 54 images" in err          # 10% held out


def test_bar_in_a_log_file_updates_at_least_every_10_s(capsys):
    bar = progress_bar(10, "x")
    assert bar.mininterval <= 10 and bar.miniters == 1 and not bar.dynamic_miniters
    bar.close()
    assert progress_bar(10, "x", enabled=False).disable


def test_slow_prediction_shows_progress_fast_one_does_not(capsys, monkeypatch):
    net = Recipe(width=4, feature_dim=8).build(1, 8, 3).eval()
    predict(net, torch.rand(50, 1, 8, 8), batch_size=10)
    assert capsys.readouterr().err == ""                                              # under the 3 s delay
    clock = iter(np.arange(0, 1000, 2.0))
    import tqdm.std
    monkeypatch.setattr(tqdm.std, "time", lambda: float(next(clock)))               # every call: 2 s later
    predict(net, torch.rand(50, 1, 8, 8), batch_size=10, desc="classifying slowly")
    assert "classifying slowly" in capsys.readouterr().err


def test_gan_train_test_uses_the_resnet_by_default(monkeypatch, capsys):
    assert inspect.signature(gtt.gan_train_test).parameters["recipe"].default == gtt.GAN_RECIPE == RESNET_RECIPE
    assert gtt.GAN_RECIPE.arch == "resnet"
    seen = []
    real_fit, real_train = DomainExtractor.fit_or_load.__func__, gtt.train_classifier

    def fast(recipe):      # what the default recipe would train, made quick (same arch)
        return dataclasses.replace(recipe, width=8, min_steps=40, max_steps=60, batch_size=32)

    def fit_spy(cls, *a, recipe, **k):
        seen.append(("real", recipe))
        return real_fit(cls, *a, recipe=fast(recipe), **k)

    def train_spy(*a, recipe, **k):
        seen.append(("generated", recipe))
        return real_train(*a, recipe=fast(recipe), **k)
    monkeypatch.setattr(DomainExtractor, "fit_or_load", classmethod(fit_spy))
    monkeypatch.setattr(gtt, "train_classifier", train_spy)
    train_x, train_y = bars(120, 0)
    test_x, test_y = bars(60, 1)
    res = gtt.gan_train_test(Replay(test_x, test_y), train_x, train_y, test_x, test_y, LEVELS, seeds=(0,),
                             progress=False)
    assert seen == [("real", RESNET_RECIPE), ("generated", RESNET_RECIPE)]
    assert capsys.readouterr().err == ""
    assert res.mean[keys.REAL_BASELINE] > 90 and res.mean[keys.GAN_TRAIN] > 80
    assert res.per_seed[0][keys.GAN_TEST] == pytest.approx(res.per_seed[0][keys.REAL_BASELINE], abs=5)


def test_gan_train_test_progress_names_each_stage(capsys):
    train_x, train_y = bars(90, 0)
    test_x, test_y = bars(30, 1)
    gtt.gan_train_test(Replay(test_x, test_y), train_x, train_y, test_x, test_y, LEVELS, seeds=(0,),
                       recipe=TINY_RESNET)
    err = capsys.readouterr().err
    assert "GAN-test classifier (real): training resnet (seed 0) on 90 images" in err
    assert "GAN-train classifier: training resnet (seed 0) on 90 generated images" in err
