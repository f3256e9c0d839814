"""metrics.api.evaluate, the CLI (python -m metrics) and the Table 7 sensitivity."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

from metrics import METRICS, keys
from metrics.api import evaluate, evaluate_detailed
from metrics.cli import main
from metrics.features import DomainExtractor, Features, Recipe
from metrics.sensitivity import subset_scores, subset_sensitivity

LEVELS = 17
TINY = Recipe(width=8, feature_dim=16, epochs=4, min_steps=40, max_steps=60, batch_size=32)
ALL = ("fid", "kid", "is", "prd", "prdc")
ROOT = Path(__file__).resolve().parents[1]


def bars(n, seed, n_classes=3, size=8, bright=12):
    rng = np.random.RandomState(seed)
    y = np.arange(n) % n_classes
    x = rng.randint(0, 4, (n, 1, size, size))
    for i, c in enumerate(y):
        x[i, :, 2 * c:2 * c + 2] = rng.randint(bright, LEVELS, (1, 2, size))
    return torch.from_numpy(x.astype(np.uint8)), torch.from_numpy(y)


@pytest.fixture(scope="module")
def setup():
    train = bars(150, 0)
    ext = DomainExtractor.fit_or_load(*train, LEVELS, seed=0, cache_dir=None, recipe=TINY)
    return train, ext, bars(60, 1)[0], bars(60, 2, bright=6)[0]


def test_evaluate_returns_every_key_and_orders_quality(setup):
    _, ext, real, worse = setup
    good = evaluate(bars(60, 3)[0], real, levels=LEVELS, extractor=ext, seed=0)
    bad = evaluate(worse, real, levels=LEVELS, extractor=ext, seed=0)
    expected = {k for name in ALL for k in METRICS.meta(name)["keys"]}
    assert set(good) == expected and all(np.isfinite(v) for v in good.values())
    assert good[keys.FID] < bad[keys.FID] and good[keys.KID] < bad[keys.KID]


def test_combined_equals_individual_and_inputs_are_interchangeable(setup):
    _, ext, real, fake = setup
    combined = evaluate(fake, real, levels=LEVELS, extractor=ext, seed=1)
    single = {}
    for name in ALL:
        single.update(evaluate(fake, real, levels=LEVELS, extractor=ext, seed=1, metrics=[name]))
    # same features, recomputed: equal up to run-to-run BLAS round-off (prdc's counts flip only if a
    # distance lies within round-off of a radius)
    assert single == pytest.approx(combined, rel=1e-9)
    u_space = (fake.float() + torch.rand(fake.shape)) / LEVELS            # model samples in u-space
    assert evaluate(u_space.numpy(), real, levels=LEVELS, extractor=ext, seed=1) == pytest.approx(combined, rel=1e-9)


def test_features_computed_once_per_set_and_cached(setup, tmp_path, monkeypatch):
    _, ext, real, fake = setup
    calls = []
    original = type(ext).embed
    monkeypatch.setattr(type(ext), "embed", lambda self, x: calls.append(len(x)) or original(self, x))
    first = evaluate(fake, real, levels=LEVELS, extractor=ext, cache_dir=tmp_path, batch_size=1000)
    assert calls == [60, 60]                                             # one pass per set, all metrics
    again = evaluate(fake, real, levels=LEVELS, extractor=ext, cache_dir=tmp_path)
    assert calls == [60, 60] and again == pytest.approx(first, rel=1e-9)   # same cached features


class Sampler(nn.Module):
    def __init__(self, images):
        super().__init__()
        self.images, self.scale = images, nn.Parameter(torch.ones(()))

    def sample(self, n, labels=None):
        idx = torch.randint(0, len(self.images), (n,))
        return (self.images[idx].float() + torch.rand(n, *self.images.shape[1:])) / LEVELS


def test_model_input_is_seeded_and_needs_a_count(setup, tmp_path):
    _, ext, real, fake = setup
    model = Sampler(fake)
    a = evaluate_detailed(model, real, levels=LEVELS, extractor=ext, n_fake=40, seed=2, metrics=["fid"],
                          cache_dir=tmp_path)
    b = evaluate_detailed(model, real, levels=LEVELS, extractor=ext, n_fake=40, seed=2, metrics=["fid"])
    assert a.values == pytest.approx(b.values, rel=1e-9) and a.meta["n_fake"] == 40 and a.meta["extractor"] == ext.id
    with pytest.raises(ValueError, match="n_fake"):
        evaluate(model, real, levels=LEVELS, extractor=ext)


def test_prd_curve_is_returned_and_saved(setup, tmp_path):
    _, ext, real, fake = setup
    res = evaluate_detailed(fake, real, levels=LEVELS, extractor=ext, metrics=["prd"], out_dir=tmp_path)
    precision, recall = res.curves["prd"]
    assert precision.shape == recall.shape == (1001,)
    assert (tmp_path / "prd.png").exists() and (tmp_path / "prd_curve.npz").exists()


def test_api_errors(setup):
    _, ext, real, fake = setup
    with pytest.raises(KeyError, match="valid metrics"):
        evaluate(fake, real, levels=LEVELS, extractor=ext, metrics=["fidd"])
    with pytest.raises(ValueError, match="levels=4"):
        evaluate(fake, real, levels=4, extractor=ext)
    with pytest.raises(ValueError, match="train="):
        evaluate(fake, real, levels=LEVELS, extractor="domain")
    with pytest.raises(ValueError, match="precomputed features"):
        evaluate(Features(np.zeros((3, 2)), None, "other"), real, levels=LEVELS, extractor=ext)


def _png_folder(path, images):
    path.mkdir()
    for i, im in enumerate(images):
        v = np.rint(im[0].numpy().astype(np.float64) * 255 / (LEVELS - 1)).astype(np.uint8)
        Image.fromarray(v).save(path / f"{i:03d}.png")
    return path


def test_cli_on_png_folders_prints_json_equal_to_api(setup, tmp_path):
    (train_x, train_y), _, real, fake = setup
    np.savez(tmp_path / "train.npz", x=train_x.numpy(), y=train_y.numpy())
    fake_dir, real_dir = _png_folder(tmp_path / "fake", fake), _png_folder(tmp_path / "real", real)
    args = ["--fake", str(fake_dir), "--real", str(real_dir), "--levels", str(LEVELS), "--extractor", "domain",
            "--train", str(tmp_path / "train.npz"), "--metrics", "fid,kid,prdc", "--cache-dir",
            str(tmp_path / "cache"), "--json"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "metrics", *args], capture_output=True, text=True, env=env,
                         cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    payload = json.loads(out.stdout)
    assert set(payload["values"]) == {keys.FID, keys.KID, keys.PRECISION, keys.RECALL, keys.DENSITY, keys.COVERAGE}
    ext = DomainExtractor.fit_or_load(train_x, train_y, LEVELS, seed=0, cache_dir=tmp_path / "cache")
    api = evaluate(fake, real, levels=LEVELS, extractor=ext, metrics=["fid", "kid", "prdc"])
    assert payload["values"] == pytest.approx(api, rel=1e-6)


def test_cli_errors_are_one_line_exit_2(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("AVADE_INCEPTION", raising=False)
    folder = _png_folder(tmp_path / "imgs", bars(3, 0)[0])
    assert main(["--fake", str(folder), "--real", str(folder), "--json"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: Inception weights not found") and "\n" not in err
    assert main(["--fake", str(folder), "--real", str(folder), "--extractor", "domain"]) == 2
    assert "--train" in capsys.readouterr().err
    assert main(["--fake", str(tmp_path / "missing"), "--real", str(folder)]) == 2


def test_sensitivity_full_set_is_zero_and_fid_grows_as_data_drop():
    rng = np.random.RandomState(0)
    full = Features(rng.randn(2000, 6), rng.randn(2000, 5) * 3, "synthetic")
    rows = subset_scores(full, (1.0, 0.5, 0.05), seed=0)
    assert [r["n"] for r in rows] == [2000, 1000, 100]
    assert abs(rows[0][keys.FID]) < 1e-9
    assert rows[0][keys.FID] < rows[1][keys.FID] < rows[2][keys.FID]
    assert all(r[keys.IS] > 1 for r in rows)
    with pytest.raises(ValueError, match="fraction"):
        subset_scores(full, (0.001,))


def test_sensitivity_on_images(setup):
    _, ext, real, _ = setup
    rows = subset_sensitivity(real, LEVELS, ext, fractions=(1.0, 0.5), seed=0)
    assert rows[0]["n"] == 60 and rows[1]["n"] == 30 and rows[1][keys.FID] > rows[0][keys.FID]
