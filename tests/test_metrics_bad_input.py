"""Bad input to the metrics API and CLI: one-line errors naming the file or argument, never a silent fix.

Also the one image-folder reader (metrics/images.py) shared with the folder datasets of protocols/datasets.py.
"""
import numpy as np
import pytest
import torch
from PIL import Image

import protocols.datasets as D
from metrics.api import Evaluation, compute_metrics, evaluate
from metrics.cli import main
from metrics.features import Features
from metrics.images import IMAGE_SUFFIXES, load_images, read_folder, sample_levels

LEVELS = 17


class Extractor:
    """A stand-in extractor (never reached when the input is refused first)."""

    name, id = "flat", "flat-1"

    def identity(self):
        return {"extractor": "flat"}

    def embed(self, x_unit):
        f = x_unit.flatten(1)[:, :6].double()
        return f, f[:, :3]


def _images(n=12, seed=0):
    return torch.randint(0, LEVELS, (n, 1, 4, 4), generator=torch.Generator().manual_seed(seed), dtype=torch.uint8)


def _one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err, err
    for needle in needles:
        assert needle in err, err
    return err


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
@pytest.mark.parametrize("as_tensor", [False, True])
def test_non_finite_float_images_are_refused(bad, as_tensor):
    x = np.random.RandomState(0).rand(12, 1, 4, 4).astype(np.float32)
    x[3, 0, 1, 2] = bad
    fake = torch.from_numpy(x) if as_tensor else x
    with pytest.raises(ValueError, match=r"^fake hold 1 NaN or infinite value") as err:
        evaluate(fake, _images(), levels=LEVELS, extractor=Extractor(), metrics=["fid"])
    assert "\n" not in str(err.value)


def test_non_finite_npz_is_refused_by_the_cli(tmp_path, capsys):
    x = np.random.RandomState(0).rand(12, 1, 4, 4)
    x[0, 0, 0, 0] = np.nan
    np.savez(tmp_path / "fake.npz", x=x)
    np.savez(tmp_path / "real.npz", x=_images().numpy())
    _one_line_error(capsys, ["--fake", str(tmp_path / "fake.npz"), "--real", str(tmp_path / "real.npz"),
                             "--levels", str(LEVELS)], "fake.npz[x]", "NaN")


def test_out_of_range_floats_and_bad_shapes_keep_their_messages():
    with pytest.raises(ValueError, match=r"must lie in \[0, 1\]"):
        evaluate(np.full((12, 1, 4, 4), 1.5), _images(), levels=LEVELS, extractor=Extractor())
    with pytest.raises(ValueError, match="N x C x H x W"):
        evaluate(torch.zeros(12, 4, 4, dtype=torch.uint8)[None, None], _images(), levels=LEVELS,
                 extractor=Extractor())


class NaNModel:
    def sample(self, n, labels=None):
        return torch.full((n, 1, 4, 4), float("nan"))


def test_model_samples_must_be_finite():
    with pytest.raises(ValueError, match="model.sample returned 32 NaN"):
        sample_levels(NaNModel(), 2, LEVELS, seed=0)


def test_non_finite_features_are_refused():
    good = Features(np.random.RandomState(0).randn(20, 3), None, "x")
    bad = Features(good.features.copy(), None, "x")
    bad.features[2, 1] = np.inf
    with pytest.raises(ValueError, match="real features or logits hold NaN or infinite"):
        compute_metrics(good, bad, ["fid"])


def _png_folder(path, n=3, size=(4, 4)):
    path.mkdir(parents=True)
    for i in range(n):
        Image.fromarray(np.full(size, 40 * i, np.uint8)).save(path / f"{i}.png")
    return path


def test_unreadable_image_names_the_file(tmp_path, capsys):
    folder = _png_folder(tmp_path / "imgs")
    (folder / "broken.png").write_bytes(b"not a png")
    with pytest.raises(ValueError, match=r"broken\.png is not a readable image"):
        load_images(folder, LEVELS)
    _one_line_error(capsys, ["--fake", str(folder), "--real", str(folder)], "broken.png", "not a readable image")
    truncated = tmp_path / "cut" / "0.png"
    _png_folder(tmp_path / "cut", n=1, size=(64, 64))
    truncated.write_bytes(truncated.read_bytes()[:60])
    with pytest.raises(ValueError, match=r"0\.png is not a readable image"):
        load_images(truncated.parent, LEVELS)


@pytest.mark.parametrize("kind,reason", [("text", "not a zip archive"), ("empty", "not a zip archive"),
                                         ("pickle", "pickled Python objects"), ("npy", "a single .npy array")])
def test_garbage_npz_is_a_clear_error(tmp_path, capsys, kind, reason):
    path = tmp_path / "bad.npz"
    if kind == "text":
        path.write_text("hello")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "pickle":
        np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    else:
        with open(path, "wb") as f:
            np.save(f, np.zeros((2, 1, 4, 4), np.uint8))
    with pytest.raises(ValueError, match=f"{path} is not a readable .npz of images") as err:
        load_images(path, LEVELS)
    assert reason in str(err.value) and "allow_pickle" not in str(err.value)
    _one_line_error(capsys, ["--fake", str(path), "--real", str(path)], str(path), reason)


def test_cli_bug_is_exit_1_and_user_error_exit_2(monkeypatch, capsys):
    import metrics.cli as cli

    def boom(*a, **k):
        raise ZeroDivisionError("oops")
    monkeypatch.setattr(cli, "evaluate_detailed", boom)
    assert main(["--fake", "f", "--real", "r"]) == 1
    assert "internal error (ZeroDivisionError: oops)" in capsys.readouterr().err
    monkeypatch.setattr(cli, "evaluate_detailed", lambda *a, **k: Evaluation({"fid": 1.0}))
    assert main(["--fake", "f", "--real", "r"]) == 0


def test_one_folder_reader_for_metrics_and_datasets(tmp_path):
    assert D.IMAGE_EXTS is IMAGE_SUFFIXES
    folder = tmp_path / "mixed"
    folder.mkdir()
    rng = np.random.RandomState(0)
    for i, suffix in enumerate((".png", ".JPG", ".bmp", ".gif", ".tif", ".webp")):
        Image.fromarray(rng.randint(0, 256, (8, 8, 3)).astype(np.uint8)).save(folder / f"{i}{suffix}")
    (folder / "notes.txt").write_text("not an image")
    assert read_folder(folder).shape == (6, 3, 8, 8)
    ds = D.load_dataset(f"folder:{folder}@8")
    x = torch.cat([ds.train_x, ds.val_x, ds.test_x])
    assert len(x) == 6
    np.testing.assert_array_equal(np.sort(x.numpy().reshape(6, -1), axis=0),      # same pixels, any split order
                                  np.sort(read_folder(folder, resolution=8, rgb=True).reshape(6, -1), axis=0))
    (folder / "broken.tif").write_bytes(b"junk")
    with pytest.raises(D.DatasetFormatError, match="broken.tif"):
        D.load_dataset(f"folder:{folder}@8")
